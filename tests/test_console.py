"""The terminal progress view of `comfy-fixer --auto` (fixer/app/console.py)."""

from __future__ import annotations

from fixer.app.console import bar_line
from fixer.models import Transfer, TransferRequest


def test_bar_line_fits_the_terminal_with_its_state_and_the_end_of_a_long_name():
    name = "a_rather_long_model_name_for_this_bar_v2.safetensors"
    t = Transfer(TransferRequest("http://127.0.0.1/x", "loras", name, model_name=name), "/t/x", "/t/x.part",
                 bytes_done=500_000, total=1_000_000, speed=999_900.0, state="downloading")
    for width in (80, 100, 130):
        line = bar_line(t, width)
        assert len(line) <= width - 1, (width, line)
        assert line.endswith(" downloading") and " 50.0% 999.9 KB/s ETA 0:00 " in line
        assert line.startswith("…" + name[-27:] + " [")
