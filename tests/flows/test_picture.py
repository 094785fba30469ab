"""`imagine flow show --png`: the DAG drawn with Pillow, one row per depth."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from imagine.flows import Flow
from imagine.flows.picture import layers

from ..helpers.cli import run

EXAMPLE = Path(__file__).parents[2] / "examples" / "flows" / "speech_check.yaml"


def test_layers_put_each_step_below_what_it_reads(imagine_home):
    rows = layers(Flow.load(EXAMPLE))
    names = [[ident for ident, _, _ in row] for row in rows]
    assert names[0] == ["@source"] and names[1:4] == [["say"], ["hear"], ["score"]]
    assert all(ident.startswith("@out:") for ident in names[-1])


def test_show_png_writes_a_picture(tmp_path, imagine_home):
    proc = run("flow", "show", str(EXAMPLE), "--png", str(tmp_path / "dag.png"), home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    assert "score: task wer" in proc.stdout
    with Image.open(tmp_path / "dag.png") as image:
        assert image.format == "PNG" and image.width >= 200 and image.height >= 300
