"""Reading big stderr logs in parallel chunks (`--log-jobs N`), merged into one result.

Each file is cut into N byte ranges at the first line of an entry (never inside one),
each range is read by its own process (the same one pass: statistics, N+1 loops, lock
analysis), and the partial results are merged in file order. What the cut can change:
a loop or a lock wait that spans a cut counts as two (one at each side), so the merged
N+1 runs and lock waits can differ from a one-process read by a few at the cuts; counts,
totals and percentiles are exact (the latency sketches have the same buckets).
csvlog, jsonlog and gzip files are read whole, by one process each.
"""

from __future__ import annotations

import gzip
import multiprocessing
from pathlib import Path

from queryaudit.locks.log import LockLogAnalyser
from queryaudit.logs.digest import DigestOptions, LogDigest
from queryaudit.logs.prefix import line_regex
from queryaudit.logs.reader import SECONDARY, ReadStats, _open, detect_format, expand_paths, read_records, read_stderr
from queryaudit.n_plus_one.runs import RunDetector

MIN_CHUNK_BYTES = 8 << 20  # smaller pieces are not worth a process


class _Range:
    """A file object reading only [start, end) of a file."""

    def __init__(self, path: Path, start: int, end: int):
        self.f = open(path, "rb", buffering=0)
        self.f.seek(start)
        self.left = end - start
        self.name = str(path)

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.f.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def cut_points(path: Path, prefix: str, jobs: int) -> list[int]:
    """Offsets that cut the file into about `jobs` pieces, each at the start of an entry."""
    size = path.stat().st_size
    pieces = max(1, min(jobs, size // MIN_CHUNK_BYTES))
    match = line_regex(prefix).match
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, pieces):
            offset = size * k // pieces
            f.seek(offset)
            f.readline()  # to the next line start
            while True:
                at = f.tell()
                line = f.readline()
                if not line:
                    break
                m = match(line.decode("utf-8", "replace").rstrip("\r\n"))
                if m is not None and m.group("severity") not in SECONDARY:
                    if at > cuts[-1]:
                        cuts.append(at)
                    break
    return cuts + [size]


def _read_piece(task: tuple) -> tuple:
    path, start, end, fmt, prefix, options, catalog = task

    locks = LockLogAnalyser(*catalog)
    digest = LogDigest(options, [locks])
    stats = ReadStats()
    if start is None:
        records = read_records([path], prefix, stats, fmt)
    else:
        stats.files.append(str(path))
        stats.formats[str(path)] = fmt
        records = _range_records(Path(path), start, end, prefix, stats)
    for record in records:
        digest.add_record(record)
    digest.detector.finish()
    locks.close_open_waits()
    locks.recent = digest.detector = None  # (bound to this process's state: not sent back)
    digest.by_text, digest.normalized, digest._pid_keys = {}, {}, {}  # caches: not worth sending
    return digest, locks, stats


def _range_records(path: Path, start: int, end: int, prefix: str, stats: ReadStats):
    with _Range(path, start, end) as f:
        yield from read_stderr(f, path.name, prefix, stats)


def ingest_parallel(paths, prefix: str, options: DigestOptions | None, jobs: int, catalog: tuple):
    """(LogFacts, LockLogAnalyser with the merged waits) for `paths`, read by `jobs` processes."""
    tasks = []
    for path in expand_paths(paths):
        fmt = detect_format(path)
        with _open(path) as f:
            plain = not isinstance(f, gzip.GzipFile)  # a gzip stream cannot be entered in the middle
        if fmt == "stderr" and plain:
            cuts = cut_points(path, prefix, jobs)
            tasks += [(str(path), a, b, fmt, prefix, options, catalog) for a, b in zip(cuts, cuts[1:], strict=False)]
        else:
            tasks.append((str(path), None, None, fmt, prefix, options, catalog))
    with multiprocessing.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
        parts = pool.map(_read_piece, tasks, chunksize=1)
    digest, locks, stats = parts[0]
    seen_files = set(stats.files)
    for other_digest, other_locks, other_stats in parts[1:]:
        digest.merge(other_digest)
        locks.merge(other_locks)
        stats.lines += other_stats.lines
        stats.records += other_stats.records
        stats.malformed_lines += other_stats.malformed_lines
        stats.truncated_fields += other_stats.truncated_fields
        stats.not_utf8 += other_stats.not_utf8
        stats.first_unmatched = stats.first_unmatched or other_stats.first_unmatched
        for width, n in other_stats.csv_field_counts.items():
            stats.csv_field_counts[width] = stats.csv_field_counts.get(width, 0) + n
        for name in other_stats.files:
            if name not in seen_files:
                seen_files.add(name)
                stats.files.append(name)
        stats.formats.update(other_stats.formats)

    digest.detector = RunDetector(digest._on_run)  # nothing left to detect: facts() finishes an empty one
    facts = digest.facts(stats)
    facts.line_prefix = prefix
    return facts, locks, stats
