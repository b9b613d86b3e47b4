"""``msc-response plan``: Monte Carlo power of candidate designs, written as JSON and a page."""

from __future__ import annotations

from pathlib import Path

from ..io import check_outputs, write_json
from ..modeling.plan import load_plan, plan
from ..reporting.plan_page import write_plan_page


def plan_job(design: str | Path, out: str | Path) -> tuple[list[dict], Path]:
    """Read the design file, check the outputs, simulate, write ``plan.json`` and ``index.html``."""
    out = Path(out)
    spec = load_plan(design)
    check_outputs([out / "plan.json", out / "index.html"], inputs=[design], option="out")
    results = plan(spec)
    write_json({"simulated": True, "results": results}, out / "plan.json")
    return results, write_plan_page(results, out)
