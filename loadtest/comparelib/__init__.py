"""comparelib: the pieces of loadtest/compare (ringlb vs nginx vs HAProxy, side by side).

- host: child processes (own process groups, niceness, cleanup), ports, /proc readings.
- environment: the machine, the commit, package installs, the private network namespace.
- layouts: the --layout presets (which cores the proxies get, which the load).
- proxies: the three proxies' configuration files, the backends, TLS material, static files.
- measure: one measured run (ringload or h2load), a scenario's rounds, callgrind.
- scenarios: what each scenario (a-h, s) runs.
- summary: the arithmetic (medians, per-round ratios, CPU per request, per-core figures).
- render: BENCHMARKS.md's generated section, the scaling table, latency.svg.
- cli: the command line.

Standard library only. loadtest/compare.md describes the method.
"""
