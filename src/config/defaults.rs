//! The value of every optional key, nginx's where nginx has one.
//!
//! | key | default | why |
//! | --- | --- | --- |
//! | `runtime.workers` | `"auto"`: one per allowed CPU (`available_parallelism`, which honours the affinity mask and cgroup quota) | thread per core |
//! | `runtime.pin_workers` | `true` | worker i on allowed core i |
//! | `runtime.shutdown_timeout` | `10s` | |
//! | `runtime.io` | `auto` | io_uring, epoll fallback |
//! | `runtime.max_connections` | `65536` | client connections per worker; accept waits at the cap (nginx's `worker_connections`, which is 512 by default, counts upstream connections too) |
//! | `server.client_header_timeout` | `60s` | nginx |
//! | `server.client_body_timeout` | `60s` | nginx |
//! | `server.keepalive_timeout` | `75s` | nginx; `0s` disables client keep-alive as in nginx |
//! | `server.keepalive_requests` | `1000` | nginx >= 1.19.10 |
//! | `server.max_header_bytes` | `16384` | about nginx's `large_client_header_buffers 4 8k` budget |
//! | `server.max_body_bytes` | `0` = unlimited | nginx's `client_max_body_size` is 1m; `import-nginx` writes it out |
//! | `runtime.temp_path` | `ringlb` under the system temp directory (`$TMPDIR` or `/tmp`) | |
//! | `runtime.pid_file` | none | |
//! | `server.access_log` | `off` | events go to stderr; no file unless asked |
//! | `server.log_format` | `"combined"` | nginx |
//! | `server.tls_protocols` | `["TLSv1.2", "TLSv1.3"]` | nginx >= 1.23.4 |
//! | `server.http2` | `true` | offered by ALPN; HTTP/1.1 always |
//! | `server.proxy_protocol` | `false` | nginx |
//! | `server.real_ip_from` | none (off) | nginx |
//! | `server.real_ip_header` | `"X-Forwarded-For"` | nginx's default is `X-Real-IP`; behind a cloud balancer X-Forwarded-For is what arrives |
//! | `server.underscores_in_headers` | `false` | nginx |
//! | `location.index` | `["index.html"]` | nginx |
//! | `location.expires` | none | nginx `expires off` |
//! | `location.proxy_request_buffering` / `proxy_buffering` | `true` | nginx; Gunicorn's sync workers need both |
//! | `location.proxy_buffers` | `256k` | one figure for nginx's `proxy_buffers 8 4k\|8k` plus busy buffers, larger so most responses never touch disk |
//! | `location.proxy_max_temp_file_size` | `1g` | nginx's `1024m` |
//! | `location.max_body_bytes` | the server block's | |
//! | `location.read_timeout` | the upstream's | |
//! | `location.upgrade` | `["websocket"]` | nginx forwards no Upgrade unless configured; WebSocket is what deployments configure |
//! | `upstream.balance` | `round_robin` | nginx |
//! | `upstream.keepalive` | `32` | idle connections per worker per server (nginx: off unless set) |
//! | `upstream.keepalive_requests` | `1000` | nginx |
//! | `upstream.keepalive_timeout` | `60s` | nginx |
//! | `upstream.connect_timeout` / `send_timeout` / `read_timeout` | `60s` | nginx's `proxy_*_timeout` |
//! | `upstream.next_upstream` | `["error", "timeout"]` | nginx |
//! | `upstream.next_upstream_tries` | `0` = unlimited | nginx |
//! | `upstream.next_upstream_timeout` | `0s` = unlimited | nginx |
//! | `upstream.ip_hash_prefix` | `{ v4 = 24, v6 = 128 }` | nginx's ip_hash |
//! | `upstream.hash_balance_factor`, `panic_threshold`, `retry_budget` | off | nginx has none |
//! | `upstream.retry_budget` fields, when the table is given | `ratio = 0.2`, `min = 3` | Envoy/Finagle-like |
//! | `upstream.queue` | `0` = no queue (503 at once) | nginx |
//! | `upstream.queue_timeout` | `5s` | only used when `queue > 0` |
//! | `servers[].weight` | `1` | nginx |
//! | `servers[].max_fails` | `1` | nginx |
//! | `servers[].fail_timeout` | `10s` | nginx |
//! | `servers[].max_conns` | `0` = unlimited | nginx |
//! | `servers[].backup` / `down` | `false` | nginx |
//! | `servers[].slow_start` | `0s` = off | nginx plus |
//! | `health_check.path` | `"/health"` | |
//! | `health_check.interval` | `2s` | HAProxy's `inter` |
//! | `health_check.timeout` | `1s` | |
//! | `health_check.fails` | `2` | consecutive failures to mark down |
//! | `health_check.passes` | `2` | consecutive successes to mark up (HAProxy's `rise`) |
//! | `health_check.status` | `"200-399"` | HAProxy's `httpchk` success range |

use std::time::Duration;

pub const PIN_WORKERS: bool = true;
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNECTIONS: usize = 65536;

pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
pub const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
pub const CLIENT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
pub const CLIENT_KEEPALIVE_REQUESTS: u64 = 1000;
pub const MAX_HEADER_BYTES: u64 = 16384;
pub const MAX_BODY_BYTES: u64 = 0;
pub const LOG_FORMAT: &str = "combined";
pub const HTTP2: bool = true;
pub const PROXY_PROTOCOL: bool = false;
pub const REAL_IP_HEADER: &str = "X-Forwarded-For";
pub const UNDERSCORES_IN_HEADERS: bool = false;

pub const INDEX: &[&str] = &["index.html"];
pub const PROXY_REQUEST_BUFFERING: bool = true;
pub const PROXY_BUFFERING: bool = true;
pub const PROXY_BUFFERS: u64 = 256 << 10;
pub const PROXY_MAX_TEMP_FILE_SIZE: u64 = 1 << 30;
pub const UPGRADE: &[&str] = &["websocket"];

pub const UPSTREAM_KEEPALIVE: usize = 32;
pub const UPSTREAM_KEEPALIVE_REQUESTS: u64 = 1000;
pub const UPSTREAM_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const NEXT_UPSTREAM_TRIES: u32 = 0;
pub const NEXT_UPSTREAM_TIMEOUT: Duration = Duration::ZERO;
pub const QUEUE: usize = 0;
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
pub const RETRY_BUDGET_RATIO: f64 = 0.2;
pub const RETRY_BUDGET_MIN: u32 = 3;

pub const WEIGHT: u32 = 1;
pub const MAX_FAILS: u32 = 1;
pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNS: u32 = 0;
pub const SLOW_START: Duration = Duration::ZERO;

pub const HEALTH_PATH: &str = "/health";
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const HEALTH_FAILS: u32 = 2;
pub const HEALTH_PASSES: u32 = 2;
pub const HEALTH_STATUS: (u16, u16) = (200, 399);

/// `runtime.temp_path`: `ringlb` under the system temp directory.
pub fn temp_path() -> std::path::PathBuf {
    std::env::temp_dir().join("ringlb")
}

/// `workers = "auto"`: one worker per CPU this process may run on.
pub fn auto_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
