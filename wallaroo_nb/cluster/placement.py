"""Where things are: the slot table (slot -> worker, versioned) and where each source
runs. The driver owns it; manifests record it; a rescaling replaces it."""

from __future__ import annotations

from typing import Any, Optional

from ..keys import default_owners, rebalance
from ..plan import Plan


class Placement:
    """The slot table and the sources' workers for ``n`` workers."""

    def __init__(self, plan: Plan, n: int):
        self.plan = plan
        self.owners = default_owners(plan.n_slots, n)
        self.version = 0
        self.assign = plan.source_workers(n)

    def table(self, n: int) -> dict:
        """The slot table as a manifest records it."""
        return {"workers": n, "owners": list(self.owners), "version": self.version}

    def resume(self, manifest: Optional[dict], n: int) -> None:
        """A resumed app takes the committed table, rebalanced to its ``n`` workers."""
        table = (manifest or {}).get("table") or {}
        if table.get("owners"):
            owners = list(table["owners"])
            self.owners = owners if table["workers"] == n else rebalance(owners, n)
            self.version = table["version"] + (table["workers"] != n)

    def assign_for(self, n: int) -> dict:
        """Where sources run with ``n`` workers: where they are, unless that worker
        leaves (parallel sources: on every worker)."""
        out = {}
        for sp in self.plan.sources:
            now = self.assign[sp.id]
            if getattr(sp.config, "parallel", False):
                out[sp.id] = tuple(range(n))
            else:
                out[sp.id] = now if all(w < n for w in now) else (sp.id % n,)
        return out

    def adopt(self, rescale: Any) -> None:
        self.owners, self.version = list(rescale.owners), rescale.version
        self.assign = dict(rescale.assign)
