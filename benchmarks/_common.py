"""Helpers shared by the benchmark scripts."""


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM).  Not ru_maxrss: a child started from
    a big parent inherits the parent's maximum through fork, which would hide the child's own."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
