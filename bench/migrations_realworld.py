"""queryaudit review-migration and squawk 2.70 side by side on the real-world corpus
(../shared/corpora/migrations-realworld): findings per rule for each tool, and every
(file, rule) where they disagree, for reading by hand.

    PYTHONPATH=$PWD python bench/migrations_realworld.py [CORPUS_DIR] [--show RULE] [--all]

Each file is reviewed on its own, the way its runner applies it: one transaction per file
(`--assume-in-transaction`), except kratos' `.autocommit.` files. squawk comes from
squawk-cli on PyPI (`pip install squawk-cli`); both run their default rule sets, or with
--all every rule squawk has (its opt-in ones included).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from queryaudit.migrations import Settings, all_rules
from queryaudit.migrations.review import review

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = (
    Path(os.environ.get("QUERYAUDIT_SHARED") or ROOT.parent / "shared") / "corpora" / "migrations-realworld"
)


SQUAWK = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")


def in_transaction(path: Path) -> bool:
    return ".autocommit." not in path.name


def ours(files: list[Path], every: bool) -> Counter:
    found: Counter = Counter()
    select = [r.id for r in all_rules() if r.squawk or r.default] if every else None
    for f in files:
        result = review([(str(f), f.read_text())], Settings(assume_in_transaction=in_transaction(f)), select)
        for finding in result.findings:
            # A finding that stands for several rules (the same fix) counts for each of them.
            for rule_id in (finding.rule, *finding.evidence.get("also", ())):
                found[(str(f), rule_id)] += 1
    return found


def squawk(files: list[Path], every: bool) -> Counter:
    found: Counter = Counter()
    include = ["--include", ",".join(r.id for r in all_rules() if r.squawk and not r.default)] if every else []
    for tx in (True, False):
        batch = [str(f) for f in files if in_transaction(f) == tx]
        if not batch:
            continue
        cmd = [SQUAWK, "--reporter", "json", *include, *(["--assume-in-transaction"] if tx else []), *batch]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        for v in json.loads(out or "[]"):
            found[(v["file"], v["rule_name"])] += 1
    return found


def main(argv: list[str]) -> int:
    show = argv[argv.index("--show") + 1] if "--show" in argv else None
    args = [a for a in argv if not a.startswith("--") and a != show]
    corpus = Path(args[0]) if args else DEFAULT_CORPUS
    files = sorted(corpus.rglob("*.sql"))
    every = "--all" in argv
    q, s = ours(files, every), squawk(files, every)
    q_rules, s_rules = Counter(), Counter()
    for (_f, r), n in q.items():
        q_rules[r] += n
    for (_f, r), n in s.items():
        s_rules[r] += n
    print(f"{len(files)} files; findings per rule (queryaudit / squawk 2.70), rules where either reports:")
    for r in sorted(set(q_rules) | set(s_rules)):
        print(f"  {r:46} {q_rules[r]:5} {s_rules[r]:5}")
    shared = set(s_rules) | {r for r in q_rules}
    disagree = sorted(k for k in set(q) | set(s) if k[1] in shared and q[k] != s[k])
    by_rule = Counter(r for _, r in disagree)
    print(f"(file, rule) pairs that disagree: {len(disagree)}")
    for r, n in by_rule.most_common():
        print(f"  {r:46} {n:5}")
    if show:
        for f, r in disagree:
            if r == show:
                print(f"  {f}: queryaudit {q[(f, r)]}, squawk {s[(f, r)]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
