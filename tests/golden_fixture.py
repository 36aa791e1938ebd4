"""The hand-written KuaiSAR fixture of the golden tests (see tests/test_preprocess_golden.py)."""

import os

from tests.testing import item_row, rec_row, src_row, user_row, write_kuaisar

U1, U2, U3 = 1001, 1002, 1003
BIG_ITEM = 3_000_000_000  # above 2^31


def rec_rows():
    return [
        rec_row(U1, 501, 10),             # 0: feed target without history -> ineligible
        rec_row(U1, 502, 10, click=0),    # 1: impression only
        rec_row(U1, 503, 20),             # 2: train
        rec_row(U1, 504, 40),             # 3: train
        rec_row(U1, BIG_ITEM, 40),        # 4: valid (same ts as row 3)
        rec_row(U1, 506, 60),             # 5: test
        rec_row(U2, 501, 5),              # 6: ineligible (no history)
        rec_row(U2, 508, 100),            # 7: train (history masks U2's held-out searches)
        rec_row(U2, 509, 110),            # 8: train
        rec_row(U2, 510, 120),            # 9: valid
        rec_row(U2, 511, 130),            # 10: test
        rec_row(U3, 501, 10),             # 11: ineligible
        rec_row(U3, 502, 20),             # 12
        rec_row(U3, 503, 30),             # 13: U3 has only 2 eligible feed targets -> dropped
        rec_row(U3, 503, 30),             # 14: exact duplicate of row 13
    ]


def src_rows():
    return [
        src_row(U1, 7, 15, [11, 12], 601, 0),   # 0: session 7 (train search target)
        src_row(U1, 7, 15, [11, 12], 602, 1),   # 1
        src_row(U1, 7, 15, [11, 12], 603, 2),   # 2
        src_row(U1, 8, 30, [13], 604, 0),       # 3: session 8, no click -> fallback 604
        src_row(U1, 8, 30, [13], 605, 0),       # 4
        src_row(U1, 9, 50, [14, 15], 606, 1),   # 5: session 9 (valid)
        src_row(U1, 10, 70, [16], 607, 1),      # 6: session 10 (test)
        src_row(U2, 20, 10, [21], 620, 1),      # 7: train
        src_row(U2, 21, 20, [22], 621, 1),      # 8: valid
        src_row(U2, 22, 30, [23], 622, 1),      # 9: test
    ]


def write(directory, extra_lines=None):
    items = [item_row(i, caption=(i % 7 + 1, 40)) for i in
             (501, 502, 503, 504, BIG_ITEM, 506, 508, 509, 510, 511, 601, 602, 603, 604)]
    return write_kuaisar(directory, rec_rows(), src_rows(), items,
                         [user_row(u) for u in (U1, U2, U3)], extra_lines=extra_lines)


def preprocessed(root, config, out: str = "out") -> str:
    """The golden fixture written under ``root/raw`` and preprocessed into ``root/<out>`` with
    the ``PreprocessConfig`` fields ``config`` (a dict); returns the data dir."""
    import json

    from tests.testing import run_preprocess

    path = os.path.join(str(root), "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    data_dir = os.path.join(str(root), out)
    run_preprocess(write(os.path.join(str(root), "raw")), data_dir, "--config", path)
    return data_dir
