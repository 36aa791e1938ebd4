"""benchmarks/bench_neighbours.py: the per-step peak RSS read from a run's log and trace."""

import datetime
import hashlib

from benchmarks.bench_neighbours import stage_peaks, table_digests


T0 = datetime.datetime(2026, 12, 7, 11, 0, 0)


def stamp(seconds: float) -> str:
    """The job log's timestamp ``seconds`` after ``T0``."""
    return (T0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S,000")


def test_stage_peaks_splits_the_trace_at_log_lines(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("\n".join([
        "WARNING:root:noise", f"{stamp(10)} INFO timelines: 5000 users merged",
        f"{stamp(20)} INFO neighbours/histories: 20000 done",
        f"{stamp(30)} INFO neighbours/histories: 40000 done",
        f"{stamp(40)} INFO neighbours/lsh: train feed snapshot 0: 9 users", ""]))
    trace = tmp_path / "job.rss"
    base = T0.timestamp()
    trace.write_text("".join(f"{base + s} {rss}\n" for s, rss in
                             [(5, 100), (12, 300), (15, 250), (25, 900), (35, 700), (41, 400),
                              (50, 450)]))
    assert stage_peaks(str(log), str(trace)) == [
        {"after": "start", "seconds": 0.0, "peak_rss_mib": 100},
        {"after": "timelines", "seconds": 3.0, "peak_rss_mib": 300},
        {"after": "neighbours/histories", "seconds": 10.0, "peak_rss_mib": 900},
        {"after": "neighbours/lsh", "seconds": 9.0, "peak_rss_mib": 450}]


def test_table_digests_cover_the_shards_only(tmp_path):
    (tmp_path / "neighbours-00000-of-00002.jsonl").write_bytes(b'{"user": 1}\n')
    (tmp_path / "neighbours-00001-of-00002.jsonl").write_bytes(b"")
    (tmp_path / "neighbour_stats.json").write_text("{}")
    assert table_digests(str(tmp_path)) == {
        "neighbours-00000-of-00002.jsonl": hashlib.sha256(b'{"user": 1}\n').hexdigest(),
        "neighbours-00001-of-00002.jsonl": hashlib.sha256(b"").hexdigest()}
