"""Where the board's numbers come from, read from the results' run.json records (never
from the clock or the checkout, so that regenerating gives the same bytes): the profile,
the seeds, the git commits the runs were made at, and the newest run's `finished` stamp."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from .collect import Result

SHORT_COMMIT = 12


@dataclass(frozen=True)
class Provenance:
    profile: str
    seeds: tuple[int, ...]
    commits: tuple[tuple[str, int, int], ...]  # (commit, runs, runs with uncommitted changes)
    newest_finished: str | None                # as the record states it (ISO 8601)

    def lines(self) -> list[tuple[str, str]]:
        """(label, text) pairs for the page and the Markdown."""
        commits = []
        for commit, runs, dirty in self.commits:
            changes = f", {dirty} with uncommitted changes" if dirty else ""
            commits.append(f"{commit[:SHORT_COMMIT]} ({runs} runs{changes})")
        return [("profile", self.profile),
                ("seeds", ", ".join(str(seed) for seed in self.seeds) or "none"),
                ("git commit" if len(commits) == 1 else "git commits",
                 "; ".join(commits) or "none"),
                ("newest run finished", self.newest_finished or "unknown")]


def _moment(stamp: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None  # naive stamps do not compare


def from_results(profile: str, results: list[Result]) -> Provenance:
    runs, dirty = Counter(), Counter()
    stamps = []
    for result in results:
        git = result.record["git"]
        commit = git.get("commit") or "unknown"
        runs[commit] += 1
        dirty[commit] += bool(git.get("dirty"))
        moment = _moment(result.record["finished"])
        if moment is not None:
            stamps.append((moment, result.record["finished"]))
    return Provenance(profile, tuple(sorted({result.label["seed"] for result in results})),
                      tuple((commit, runs[commit], dirty[commit]) for commit in sorted(runs)),
                      max(stamps)[1] if stamps else None)
