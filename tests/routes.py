"""The two execution paths every parity test runs on: the plain MLX modules (what Metal and CUDA
run) and the CPU-tuned twins of :mod:`seamless_mlx.cpu` swapped in."""

from seamless_mlx import cpu

ROUTES = ("plain", "cpu")


def use_route(model, route: str):
    """Put ``model`` (in place) on ``route``; returns it."""
    if route not in ROUTES:
        raise ValueError(route)
    return cpu.accelerate(model) if route == "cpu" else cpu.plain(model)


def route_of(model) -> str:
    """The route ``model`` is on."""
    return "cpu" if any(type(m).__module__.startswith("seamless_mlx.cpu") for _, m in model.named_modules()) else "plain"
