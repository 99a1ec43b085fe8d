"""The Ray Data adapter on a local Ray instance: same translations as the single-process API, in
order, none lost, a bad row reported in its own ``error`` column."""

import pytest

ray = pytest.importorskip("ray")

from seamless_mlx.api import translate  # noqa: E402
from seamless_mlx.ray import Translator  # noqa: E402

TEXTS = [
    ("Hello world, how are you today?", "eng"),
    ("Bonjour tout le monde ! Comment allez-vous ?", "fra"),
    ("Hi.", "eng"),
    ("", "eng"),  # a bad row: empty text
    ("The quick brown fox jumps over the lazy dog, and then it runs far away.", "eng"),
    ("Guten Morgen, wie geht es dir?", "deu"),
    ("Numbers 1234 567 89.", "eng"),
    ("Je voudrais un café, s'il vous plaît.", "fra"),
] * 2


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


def test_map_batches_equals_single_process_api_in_order(local_ray, mlx_model):
    rows = [{"id": i, "text": t, "src_lang": s} for i, (t, s) in enumerate(TEXTS)]
    ds = ray.data.from_items(rows).map_batches(
        Translator, fn_constructor_kwargs=dict(model=mlx_model, tgt_lang="spa", max_new_tokens=6, batch_size=4),
        batch_size=5, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1,
    )
    out = ds.take_all()
    assert [r["id"] for r in out] == list(range(len(rows)))  # in order, none lost
    expected = translate([t for t, _ in TEXTS], tgt_lang="spa", src_lang=[s for _, s in TEXTS], model=mlx_model,
                         max_new_tokens=6)
    assert [r["translation"] for r in out] == [e.text for e in expected]
    assert [bool(r["error"]) for r in out] == [not t for t, _ in TEXTS]
    assert all("empty" in r["error"] for r in out if r["error"])
