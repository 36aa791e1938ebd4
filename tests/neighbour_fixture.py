"""The small KuaiSAR fixture of the neighbour tests (``test_neighbour_features``,
``test_neighbour_serving_table``, ``test_dense_neighbours``).

Times in minutes after T0 = 2023-05-23 00:00 Beijing (default snapshots T_0 = 1440,
T_1 = 2880, T_2 = 4320); all items have second-level category 0, so feed tokens are items only:

  user 1 (A) feed 100@10 101@20 102@1500 103@1600 | 104@3000 (valid) 105@3100 (test)
             search s11@5 [1,2]→200, s12@1550 [1,3]→201 | s13@3050 [2,44]→202 (valid),
             s14@3200 [55]→203 (test)
  user 2 (B) feed 100@30 101@40 110@1450 111@1600 | 900@2900 (valid) 901@2950 (test)
  user 3 (C) search s31@50 [1,2]→200, s36@100 [6] no click (fallback 220),
             s32@1460 [1,3]→201,202,204, s33@2000 [1..10]→210 | s34@2950 [88]→211 (valid),
             s35@3000 [99]→212 (test)
  user 9 (filler: negative pools; no overlap with anyone) feed 300..309 @200..290 and
             310@1700 (test), search [60+i]→400+i @300+10i.
"""

import json
import os

from tests.testing import item_row, rec_row, run_preprocess, src_row, user_row, write_kuaisar

A, B, C, FILLER = 1, 2, 3, 9
PRE_CONFIG = {"num_train_negatives": 1, "num_eval_negatives": 3}


def rec_rows():
    return ([rec_row(A, i, m) for i, m in ((100, 10), (101, 20), (102, 1500), (103, 1600),
                                           (104, 3000), (105, 3100))]
            + [rec_row(B, i, m) for i, m in ((100, 30), (101, 40), (110, 1450), (111, 1600),
                                             (900, 2900), (901, 2950))]
            + [rec_row(FILLER, 300 + i, 200 + 10 * i) for i in range(10)]
            + [rec_row(FILLER, 310, 1700)])


def src_rows():
    return ([src_row(A, 11, 5, [1, 2], 200, 1), src_row(A, 12, 1550, [1, 3], 201, 1),
             src_row(A, 13, 3050, [2, 44], 202, 1), src_row(A, 14, 3200, [55], 203, 1),
             src_row(C, 31, 50, [1, 2], 200, 1),
             src_row(C, 36, 100, [6], 220, 0), src_row(C, 36, 100, [6], 221, 0),
             src_row(C, 32, 1460, [1, 3], 201, 1), src_row(C, 32, 1460, [1, 3], 202, 1),
             src_row(C, 32, 1460, [1, 3], 204, 1),
             src_row(C, 33, 2000, list(range(1, 11)), 210, 1),
             src_row(C, 34, 2950, [88], 211, 1), src_row(C, 35, 3000, [99], 212, 1)]
            + [src_row(FILLER, 90 + i, 300 + 10 * i, [60 + i], 400 + i, 1) for i in range(10)])


ITEMS = (100, 101, 102, 103, 104, 105, 107, 110, 111, 900, 901, 950, *range(200, 205),
         *range(210, 213), 220, 221, 230, *range(300, 311), *range(400, 410))


def write_raw(directory, rec=None, src=None):
    return write_kuaisar(directory, rec_rows() if rec is None else rec,
                         src_rows() if src is None else src,
                         [item_row(i, cat2=0) for i in ITEMS],
                         [user_row(u) for u in (A, B, C, 4, FILLER)])


def future_poisoned_raw(directory):
    """Appends/mutates events after τ = 3000 only: no existing target before τ changes."""
    rec = rec_rows()
    rec[5] = rec_row(A, 107, 3100)  # A's test target item changes (row index kept)
    rec += [rec_row(B, 100, 3005, click=0)]
    rec += [rec_row(4, i, m) for i, m in ((100, 3020), (101, 3030), (102, 3040), (103, 3050),
                                          (950, 4500))]
    src = src_rows() + [src_row(C, 37, 3010, [1, 2, 3], 230, 0),
                    src_row(4, 41, 3060, [1, 2], 200, 1)]
    return write_raw(directory, rec, src)


def preprocess_fixture(root, raw):
    """``jsr-preprocess`` of ``raw`` with ``PRE_CONFIG`` into ``<root>/data``; returns that dir."""
    config = os.path.join(root, "preprocess.json")
    with open(config, "w") as f:
        json.dump(PRE_CONFIG, f)
    data = os.path.join(root, "data")
    run_preprocess(raw, data, "--config", config)
    return data
