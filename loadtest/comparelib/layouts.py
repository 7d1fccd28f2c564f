"""--layout: which cores the proxies' workers get and which the backend and generator share.

A proxy in production has its cores to itself while clients and servers are elsewhere. On a
many-core machine the closest shape is proxy workers on their own cores and the backend and
generator on the others; on 2 cores the load necessarily shares one core, which makes arrivals
bursty (the generator and backend take turns), and that shape favours a batching design. The
presets name both shapes so that every figure says which one it comes from.
"""

from .host import format_cores, parse_cores

# name: (proxy cores, load cores, workers, client connections, what it is)
LAYOUTS = {
    "2core": ("0", "1", 1, 64,
              "2-core machine: 1 proxy worker on core 0, backend and generator share core 1"),
    "16core-w1": ("0", "4-15", 1, 64,
                  "16-core machine: 1 proxy worker on core 0, load on cores 4-15 (1-3 idle)"),
    "16core-w2": ("0-1", "4-15", 2, 128,
                  "16-core machine: 2 proxy workers on cores 0-1, load on cores 4-15 (2-3 idle)"),
    "16core-w4": ("0-3", "4-15", 4, 256,
                  "16-core machine: 4 proxy workers on cores 0-3, load on cores 4-15"),
    "16core-w8": ("0-7", "8-15", 8, 512,
                  "16-core machine: 8 proxy workers on cores 0-7, load on cores 8-15"),
}
# The 16-core presets up to 4 workers keep the same 12 load cores, so that a scaling series
# changes only the proxy side; at 8 workers the load gets the other half.

DEFAULT_CONNECTIONS = 64


def describe():
    """The presets, one per line, for --help."""
    return "; ".join(f"{n}: proxy {p} / load {l}, {w} workers, {c} connections"
                     for n, (p, l, w, c, _) in LAYOUTS.items())


def resolve(layout, proxy_cores, load_cores, workers, connections, cpus):
    """Fills in what the command line left open, from the preset if one is named.

    Returns (name, proxy core list, load core list, workers, connections); explicit flags win
    over the preset. Without --layout the name is the preset the result matches, else
    "custom". Raises ValueError for an unknown preset or cores this machine lacks."""
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
        p, l, w, c, _ = LAYOUTS[layout]
        proxy_cores = proxy_cores if proxy_cores is not None else p
        load_cores = load_cores if load_cores is not None else l
        workers = workers if workers is not None else w
        connections = connections if connections is not None else c
    proxy = parse_cores(proxy_cores if proxy_cores is not None else "0")
    load = parse_cores(load_cores) if load_cores else [c for c in range(cpus) if c not in proxy]
    if not load:
        raise ValueError("no cores left for the backend and generator: give --load-cores")
    missing = [c for c in proxy + load if c >= cpus]
    if missing:
        raise ValueError(f"{'layout ' + layout + ' needs' if layout else 'asked for'} core(s) "
                         f"{format_cores(missing)}, but this machine has {cpus} (0-{cpus - 1})")
    workers = workers or len(proxy)
    connections = connections or DEFAULT_CONNECTIONS
    name = layout or match(proxy, load, workers, connections)
    return name, proxy, load, workers, connections


def match(proxy, load, workers, connections):
    """The preset these settings are, or "custom"."""
    for n, (p, l, w, c, _) in LAYOUTS.items():
        if (parse_cores(p), parse_cores(l), w, c) == (proxy, load, workers, connections):
            return n
    return "custom"


def name_of(options):
    """The layout of a result's options; older results carry no name, so their settings are
    matched against the presets."""
    return options.get("layout") or match(parse_cores(options["proxy_cores"]), parse_cores(options["load_cores"]),
                                          options["workers"], options["connections"])


def about(name):
    return LAYOUTS[name][4] if name in LAYOUTS else "settings of no preset"
