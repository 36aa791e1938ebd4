"""Tests for the KuaiSAR row parser (``jsr_tf.data.kuaisar``) and its value helpers."""

from __future__ import annotations

import csv
import datetime
import io
import pickle
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsr_tf.data import kuaisar
from jsr_tf.data.kuaisar import (FILE_COLUMNS, KUAISAR_PERIOD, NOTES, REASONS, HeaderInfo,
                                 InputError, ParseResult, Period, RowParser,
                                 TimestampOutOfPeriodError, beijing_time_string, check_header,
                                 iter_lines, parse_id, parse_int_list, parse_timestamp_ms,
                                 read_header)
from jsr_tf.data.records import (FeedEvent, FollowEdge, ItemRecord, Rejection, SearchRow,
                                 UserRecord)

REC, SRC, ITEM, USER, SOCIAL = ("rec_inter.csv", "src_inter.csv", "item_features.csv",
                                "user_features.csv", "social_network.csv")
FILES = (REC, SRC, ITEM, USER, SOCIAL)
RECORD_TYPES = {REC: FeedEvent, SRC: SearchRow, ITEM: ItemRecord, USER: UserRecord,
                SOCIAL: FollowEdge}
INT64_MAX = 2**63 - 1
TS = 1684742000123  # 2023-05-22 07:53:20.123 UTC = 15:53:20 Beijing.
TS_STRING = "2023-05-22 15:53:20"
BIG = 103656000000  # The docs' example item id, above 2**31.
BEIJING = datetime.timezone(datetime.timedelta(hours=8))
FUZZ = settings(max_examples=150, deadline=None)


def csv_line(fields: Sequence[str]) -> str:
    """One CSV line as the simulator (or pandas) would write it: quoted only where needed."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(fields)  # The "\r\n" terminator makes it quote CR and LF too.
    return buffer.getvalue()[:-2]


def parser_for(file_name: str, **kwargs) -> RowParser:
    return RowParser(file_name, FILE_COLUMNS[file_name], **kwargs)


def parse_fields(file_name: str, values: Dict[str, str], row: int = 0, **kwargs) -> ParseResult:
    """Parses a row given as {column: text}, written in documented column order."""
    columns = FILE_COLUMNS[file_name]
    return parser_for(file_name, **kwargs).parse(row, csv_line([values[c] for c in columns]))


def rec_values(**overrides: str) -> Dict[str, str]:
    values = dict(user_id="3", item_id="3000000000", playing_time="1234.5",
                  duration_ms="20000.0", time=TS_STRING, timestamp="1684742000123.0", click="1",
                  forward="0", like="1", follow="0", search="0", search_item_related="0")
    values.update(overrides)
    return values


def src_values(**overrides: str) -> Dict[str, str]:
    values = dict(user_id="7", search_session_id="99", search_session_time=TS_STRING,
                  search_session_timestamp="1.684742000123e12", keyword="[20, 34, 3]",
                  search_source="USER_INPUT", item_id=str(BIG), click_cnt="2", item_type="VIDEO")
    values.update(overrides)
    return values


def item_values(**overrides: str) -> Dict[str, str]:
    values = dict(zip(FILE_COLUMNS[ITEM], (
        "9000000000", "[1, 213, 24]", "0", "NORMAL", "1970-01-01", "LongImport",
        "3", "美食", "food", "17", "家常菜", "home cooking, quick", "0", "空", "empty",
        "0", "空", "empty")))
    values.update(overrides)
    return values


def user_values(**overrides: str) -> Dict[str, str]:
    values = dict(user_id="4294967296", search_active_level="1", rec_active_level="2",
                  onehot_feat1="0", onehot_feat2="7")
    values.update(overrides)
    return values


def social_values(**overrides: str) -> Dict[str, str]:
    values = dict(user_id="1", user_follow_id=str(INT64_MAX))
    values.update(overrides)
    return values


VALUES = {REC: rec_values, SRC: src_values, ITEM: item_values, USER: user_values,
          SOCIAL: social_values}


def reason(file_name: str, **overrides: str) -> str:
    result = parse_fields(file_name, VALUES[file_name](**overrides))
    assert result.record is None and result.notes == ()
    return result.rejection.reason


# ----------------------------------------------------------------------------------------------
# Golden rows.


def test_rec_inter_golden():
    result = parser_for(REC).parse(
        7, f"3,3000000000,1234.5,20000.0,{TS_STRING},1684742000123.0,1,0,1,0,1,1")
    assert result == ParseResult(
        record=FeedEvent(user_id=3, item_id=3000000000, ts=1684742000123, row=7, click=1, like=1,
                         follow=0, forward=0, search=1, search_item_related=1,
                         playing_time=1234.5, duration_ms=20000.0),
        rejection=None, notes=())


@pytest.mark.parametrize("column,field", [("click", "click"), ("forward", "forward"),
                                          ("like", "like"), ("follow", "follow"),
                                          ("search", "search")])
def test_rec_inter_flags_map_to_their_own_fields(column, field):
    zeros = {name: "0" for name in ("click", "forward", "like", "follow", "search")}
    zeros[column] = "1.0"
    record = parse_fields(REC, rec_values(**zeros)).record
    flags = {name: getattr(record, name)
             for name in ("click", "forward", "like", "follow", "search", "search_item_related")}
    assert flags == {name: int(name == field) for name in flags}


def test_src_inter_golden_with_odd_whitespace_and_scientific_timestamp():
    line = (f'7,99,{TS_STRING},1.684742000123e12,"[ 20,34 ,\t3 ]",USER_INPUT,{BIG},2,VIDEO')
    assert parser_for(SRC).parse(0, line) == ParseResult(
        record=SearchRow(user_id=7, session_id=99, ts=1684742000123, row=0, words=(20, 34, 3),
                         source="USER_INPUT", item_id=103656000000, clicked=1,
                         item_type="VIDEO"),
        rejection=None, notes=())


@pytest.mark.parametrize("click_cnt,clicked", [("0", 0), ("1", 1), ("3", 1), ("2.0", 1),
                                               ("0.0", 0)])
def test_src_inter_click_cnt(click_cnt, clicked):
    assert parse_fields(SRC, src_values(click_cnt=click_cnt)).record.clicked == clicked


def test_src_inter_single_word_keyword_unquoted():
    line = f"7,99,{TS_STRING},1684742000123,[5],HISTORY,1,0,LIVE"
    assert parser_for(SRC).parse(2, line).record == SearchRow(
        user_id=7, session_id=99, ts=1684742000123, row=2, words=(5,), source="HISTORY",
        item_id=1, clicked=0, item_type="LIVE")


def test_item_features_golden():
    line = ('9000000000,"[1, 213, 24]",0,NORMAL,1970-01-01,LongImport,3,美食,food,17,家常菜,'
            '"home cooking, quick",0,空,empty,0,空,empty')
    assert parser_for(ITEM).parse(4, line) == ParseResult(
        record=ItemRecord(item_id=9000000000, caption=(1, 213, 24), author_id=0,
                          item_type="NORMAL", upload_time="1970-01-01", upload_type="LongImport",
                          categories=(3, 17, 0, 0)),
        rejection=None, notes=())


def test_user_features_golden():
    assert parser_for(USER).parse(0, "4294967296,1,2,0,7") == ParseResult(
        record=UserRecord(user_id=4294967296, search_active_level=1, rec_active_level=2,
                          onehot_feat1=0, onehot_feat2=7),
        rejection=None, notes=())


def test_social_network_golden_int64_max():
    assert parser_for(SOCIAL).parse(0, "1,9223372036854775807") == ParseResult(
        record=FollowEdge(user_id=1, user_follow_id=9223372036854775807), rejection=None,
        notes=())


def test_kuaisar_period_bounds():
    assert KUAISAR_PERIOD == Period(start_ms=1684598400000, end_ms=1686412800000)
    assert beijing_time_string(KUAISAR_PERIOD.start_ms) == "2023-05-21 00:00:00"
    assert beijing_time_string(KUAISAR_PERIOD.end_ms) == "2023-06-11 00:00:00"


def test_file_columns_documented_widths():
    assert {name: len(columns) for name, columns in FILE_COLUMNS.items()} == {
        REC: 12, SRC: 9, ITEM: 18, USER: 5, SOCIAL: 2}
    assert FILE_COLUMNS[ITEM][6:9] == ("first_level_category_id", "first_level_category_name",
                                       "first_level_category_name_en")


# ----------------------------------------------------------------------------------------------
# Value helpers.


@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("42", 42), ("007", 7), (" 42\t", 42), ("42.0", 42), ("42.000", 42),
    (str(2**31), 2**31), (str(INT64_MAX), INT64_MAX), ("0" * 30 + "5", 5)])
def test_parse_id_valid(text, expected):
    assert parse_id(text) == expected


@pytest.mark.parametrize("text", [
    "", " ", "-1", "+1", "1.5", "42.", "1e5", "0x10", "1_000", "abc", "12a", "١٢", "²",
    str(INT64_MAX + 1), "9" * 5000, "nan"])
def test_parse_id_invalid(text):
    with pytest.raises(ValueError):
        parse_id(text)


@pytest.mark.parametrize("text,expected", [
    ("[]", ()), ("[ ]", ()), (" [\t] ", ()), ("[1, 2, 3]", (1, 2, 3)), ("[1,2,3]", (1, 2, 3)),
    ("[ 20 ,34,\n3 ]", (20, 34, 3)), ("\t[7]\r", (7,)), ("[007]", (7,)),
    (f"[{INT64_MAX}]", (INT64_MAX,))])
def test_parse_int_list_valid(text, expected):
    assert parse_int_list(text) == expected


@pytest.mark.parametrize("text", [
    "", "[", "]", "[1,,2]", "[1 2]", "1, 2", "[a]", "[1,]", "[,1]", "[,]", "[-1]", "[+1]",
    "[1.0]", "[1_0]", "[١]", "[\u00a01]", "(1, 2)", "[[1]]", "[1]x", "[1] [2]", "['1']",
    f"[{INT64_MAX + 1}]", "[" + "9" * 5000 + "]", "__import__('os')"])
def test_parse_int_list_invalid(text):
    with pytest.raises(ValueError):
        parse_int_list(text)


@pytest.mark.parametrize("text,expected", [
    ("1684742000123.0", 1684742000123), ("1684742000123", 1684742000123),
    ("1.684742000123e12", 1684742000123), ("1.684742000123E+12", 1684742000123),
    ("1684742000123.4", 1684742000123), ("1684742000123.6", 1684742000124),
    ("1684742000122.5", 1684742000122), ("1684742000123.5", 1684742000124),  # Half to even.
    (" 1684742000123.0 ", 1684742000123), (str(KUAISAR_PERIOD.start_ms), KUAISAR_PERIOD.start_ms),
    (f"{KUAISAR_PERIOD.end_ms - 1}.0", KUAISAR_PERIOD.end_ms - 1)])
def test_parse_timestamp_ms_valid(text, expected):
    assert parse_timestamp_ms(text, KUAISAR_PERIOD) == expected


@pytest.mark.parametrize("text", ["", "abc", "nan", "NaN", "inf", "-inf", "Infinity", "1e999",
                                  "-1684742000123.0", "-1", "1_684_742_000_123", "0x1p40",
                                  "1684742000123.0.0", "１684742000123"])
def test_parse_timestamp_ms_invalid(text):
    with pytest.raises(ValueError) as info:
        parse_timestamp_ms(text, KUAISAR_PERIOD)
    assert not isinstance(info.value, TimestampOutOfPeriodError)


@pytest.mark.parametrize("text,ts", [("0", 0), ("4102444800000.0", 4102444800000),
                                     (str(KUAISAR_PERIOD.end_ms), KUAISAR_PERIOD.end_ms),
                                     (str(KUAISAR_PERIOD.start_ms - 1),
                                      KUAISAR_PERIOD.start_ms - 1)])
def test_parse_timestamp_ms_out_of_period_is_distinct(text, ts):
    with pytest.raises(TimestampOutOfPeriodError) as info:
        parse_timestamp_ms(text, KUAISAR_PERIOD)
    assert info.value.ts_ms == ts


@pytest.mark.parametrize("ts,expected", [(TS, TS_STRING), (0, "1970-01-01 08:00:00"),
                                         (-1, "1970-01-01 07:59:59"),
                                         (1685548799999, "2023-05-31 23:59:59"),
                                         (1685548800000, "2023-06-01 00:00:00")])
def test_beijing_time_string(ts, expected):
    assert beijing_time_string(ts) == expected


@given(st.integers(-(10**13), 10**14))
def test_beijing_time_string_matches_datetime(ts):
    moment = datetime.datetime.fromtimestamp(ts // 1000, tz=BEIJING)
    assert beijing_time_string(ts) == moment.strftime("%Y-%m-%d %H:%M:%S").zfill(19)


@given(st.lists(st.integers(0, INT64_MAX), max_size=60),
       st.lists(st.sampled_from(["", " ", "\t", "\n", "  \r\n "]), min_size=4, max_size=4))
def test_parse_int_list_round_trip(values, spaces):
    a, b, c, d = spaces
    text = f"{a}[{b}" + f"{c},{d}".join(map(str, values)) + f"{d}]{a}"
    assert parse_int_list(text) == tuple(values)


# ----------------------------------------------------------------------------------------------
# Rejections.


@pytest.mark.parametrize("keyword,expected", [
    ("[1,,2]", "bad_keyword"), ("[1 2]", "bad_keyword"), ("1, 2", "bad_keyword"),
    ("[a]", "bad_keyword"), ("[", "bad_keyword"), ("[1,]", "bad_keyword"),
    ("[-3]", "bad_keyword"), ("", "empty_keyword"), ("  ", "empty_keyword"),
    ("[]", "empty_keyword"), ("[ ]", "empty_keyword")])
def test_bad_keywords(keyword, expected):
    assert reason(SRC, keyword=keyword) == expected


def test_keyword_written_as_empty_quotes():
    line = f'7,99,{TS_STRING},1684742000123,"",USER_INPUT,1,0,VIDEO'
    assert parser_for(SRC).parse(0, line).rejection.reason == "empty_keyword"


@pytest.mark.parametrize("file_name,column", [
    (REC, "user_id"), (REC, "item_id"), (SRC, "user_id"), (SRC, "search_session_id"),
    (SRC, "item_id"), (ITEM, "item_id"), (ITEM, "author_id"), (USER, "user_id"),
    (SOCIAL, "user_id"), (SOCIAL, "user_follow_id")])
@pytest.mark.parametrize("text", ["abc", "-5", "1e5", "", "12a", "1.5", str(INT64_MAX + 1)])
def test_bad_ids(file_name, column, text):
    assert reason(file_name, **{column: text}) == "bad_id"


@pytest.mark.parametrize("column", ["playing_time", "duration_ms"])
@pytest.mark.parametrize("text", ["-1", "-0.5", "nan", "inf", "1e999", "", "abc", "1_0"])
def test_bad_rec_numbers(column, text):
    assert reason(REC, **{column: text}) == "bad_number"


@pytest.mark.parametrize("text", ["-1", "1.5", "", "x", "nan"])
def test_bad_click_cnt(text):
    assert reason(SRC, click_cnt=text) == "bad_number"


@pytest.mark.parametrize("column", ["click", "forward", "like", "follow", "search",
                                    "search_item_related"])
@pytest.mark.parametrize("text", ["2", "-1", "", "true", "0.5", "1.00", "01"])
def test_bad_flags(column, text):
    assert reason(REC, **{column: text}) == "bad_flag"


@pytest.mark.parametrize("file_name,column", [(REC, "timestamp"),
                                              (SRC, "search_session_timestamp")])
@pytest.mark.parametrize("text,expected", [
    ("-1684742000123.0", "bad_timestamp"), ("nan", "bad_timestamp"), ("inf", "bad_timestamp"),
    ("1e999", "bad_timestamp"), ("", "bad_timestamp"), ("soon", "bad_timestamp"),
    ("4102444800000.0", "timestamp_out_of_period"), ("0", "timestamp_out_of_period"),
    ("1.6864128e12", "timestamp_out_of_period")])  # = KUAISAR_PERIOD.end_ms, excluded.
def test_bad_timestamps(file_name, column, text, expected):
    assert reason(file_name, **{column: text}) == expected


def test_custom_period_is_honoured():
    period = Period(TS, TS + 1)
    assert parse_fields(REC, rec_values(), period=period).record.ts == TS
    assert (parse_fields(REC, rec_values(timestamp=str(TS + 1)), period=period).rejection.reason
            == "timestamp_out_of_period")


@pytest.mark.parametrize("column", ["search_source", "item_type"])
def test_blank_search_strings(column):
    assert reason(SRC, **{column: " "}) == "empty_string"


@pytest.mark.parametrize("column", ["first_level_category_id", "fourth_level_category_id"])
def test_bad_item_category(column):
    assert reason(ITEM, **{column: "x"}) == "bad_category"
    assert reason(ITEM, **{column: "-1.5"}) == "bad_category"


@pytest.mark.parametrize("sentinel", ["-1", " -1.0 ", "-99"])
def test_negative_item_category_is_the_missing_sentinel(sentinel):
    """A negative category id means "missing": the item keeps its row, the level reads 0."""
    result = parse_fields(ITEM, item_values(second_level_category_id=sentinel))
    assert result.rejection is None and result.notes == ("category_missing",)
    assert result.record.categories == (3, 0, 0, 0)
    both = parse_fields(ITEM, item_values(first_level_category_id="-1", caption=""))
    assert both.record.categories == (0, 17, 0, 0)
    assert both.notes == ("caption_missing", "category_missing")


@pytest.mark.parametrize("column", ["search_active_level", "rec_active_level", "onehot_feat1",
                                    "onehot_feat2"])
def test_bad_user_feature(column):
    assert reason(USER, **{column: "x"}) == "bad_category"


@pytest.mark.parametrize("file_name", FILES)
def test_wrong_field_count(file_name):
    parser = parser_for(file_name)
    line = csv_line([VALUES[file_name]()[c] for c in FILE_COLUMNS[file_name]])
    short = line.rsplit(",", 1)[0]
    for bad in (short, line + ",extra", "", "," * 20):
        assert parser.parse(5, bad) == ParseResult(
            None, Rejection(file_name, 5, "wrong_field_count", bad), ())


@pytest.mark.parametrize("line", ['1,"2"x', '1,"2', '"1"2,3', "1,2\r3", '"1\r\n2"x,3'])
def test_bad_csv_quoting(line):
    assert parser_for(SOCIAL).parse(0, line).rejection.reason == "bad_csv"


def test_first_bad_column_names_the_reason():
    assert reason(REC, item_id="x", timestamp="nan", click="7") == "bad_id"
    assert reason(REC, timestamp="nan", click="7") == "bad_timestamp"


def test_non_utf8_through_iter_lines():
    data = io.BytesIO(b"user_id,user_follow_id\n1,2\n\xff\xfe\n3,4\n")
    parser = RowParser(SOCIAL, read_header(data, SOCIAL))
    results = [parser.parse(row, line, raw) for row, line, raw in iter_lines(data)]
    assert [r.record for r in results] == [FollowEdge(1, 2), None, FollowEdge(3, 4)]
    assert results[1] == ParseResult(None, Rejection(SOCIAL, 1, "non_utf8", "\\xff\\xfe"), ())


def test_blank_line_through_iter_lines():
    data = io.BytesIO(b"user_id,user_follow_id\r\n\r\n1,2\r\n")
    parser = RowParser(SOCIAL, read_header(data, SOCIAL))
    results = [parser.parse(row, line, raw) for row, line, raw in iter_lines(data)]
    assert results == [ParseResult(None, Rejection(SOCIAL, 0, "wrong_field_count", ""), ()),
                       ParseResult(FollowEdge(1, 2), None, ())]


# ----------------------------------------------------------------------------------------------
# Notes (record kept).


def test_caption_missing_and_malformed():
    missing = parse_fields(ITEM, item_values(caption=""))
    assert missing.record.caption == () and missing.notes == ("caption_missing",)
    malformed = parse_fields(ITEM, item_values(caption="[1 2]"))
    assert malformed.record == parse_fields(ITEM, item_values()).record._replace(caption=())
    assert malformed.notes == ("caption_malformed",)
    empty = parse_fields(ITEM, item_values(caption="[]"))
    assert empty.record.caption == () and empty.notes == ()


def test_caption_and_keyword_truncation():
    words = "[" + ", ".join(str(i) for i in range(60)) + "]"
    item = parse_fields(ITEM, item_values(caption=words))
    assert item.record.caption == tuple(range(50)) and item.notes == ("caption_truncated",)
    search = parse_fields(SRC, src_values(keyword=words))
    assert search.record.words == tuple(range(50)) and search.notes == ("keyword_truncated",)
    short = parse_fields(SRC, src_values(keyword="[1, 2, 3]"), max_words=2)
    assert short.record.words == (1, 2) and short.notes == ("keyword_truncated",)
    exact = parse_fields(SRC, src_values(keyword="[1, 2]"), max_words=2)
    assert exact.record.words == (1, 2) and exact.notes == ()


@pytest.mark.parametrize("file_name,column", [(REC, "time"), (SRC, "search_session_time")])
@pytest.mark.parametrize("text,notes", [
    (TS_STRING, ()), ("2023-05-22T15:53:20.999", ()), (" 2023-05-22 15:53:20 ", ()),
    ("2023-05-22 15:53:21", ("time_string_mismatch",)),
    ("2023-05-22 07:53:20", ("time_string_mismatch",)),  # UTC instead of Beijing time.
    ("yesterday", ("time_string_unparseable",)), ("", ("time_string_unparseable",)),
    ("2023-02-30 10:00:00", ("time_string_unparseable",)),
    ("1684742000123.0", ("time_string_unparseable",))])
def test_time_string_cross_check(file_name, column, text, notes):
    result = parse_fields(file_name, VALUES[file_name](**{column: text}))
    assert result.record == parse_fields(file_name, VALUES[file_name]()).record
    assert result.record.ts == TS and result.notes == notes
    unchecked = parse_fields(file_name, VALUES[file_name](**{column: text}),
                             check_time_strings=False)
    assert unchecked.notes == () and unchecked.record == result.record


def test_search_item_related_without_search_is_noted_and_kept():
    result = parse_fields(REC, rec_values(search="0", search_item_related="1"))
    assert result.notes == ("search_item_related_without_search",)
    assert (result.record.search, result.record.search_item_related) == (0, 1)


def test_notes_combine():
    result = parse_fields(SRC, src_values(keyword="[1, 2, 3]", search_session_time="x"),
                          max_words=1)
    assert result.notes == ("keyword_truncated", "time_string_unparseable")


# ----------------------------------------------------------------------------------------------
# Headers.


def test_missing_required_column_names_file_and_column():
    header = [c for c in FILE_COLUMNS[REC] if c != "timestamp"]
    with pytest.raises(InputError, match=r"rec_inter\.csv.*'timestamp'"):
        check_header(REC, header)
    with pytest.raises(InputError, match=r"src_inter\.csv.*'keyword'"):
        RowParser(SRC, [c for c in FILE_COLUMNS[SRC] if c != "keyword"])


def test_extra_column_tolerated_and_reported():
    header = list(FILE_COLUMNS[SOCIAL]) + ["weight", "Unnamed: 0"]
    assert check_header(SOCIAL, header) == HeaderInfo(
        file_name=SOCIAL, width=4, index={"user_id": 0, "user_follow_id": 1},
        extra=("weight", "Unnamed: 0"), missing_optional=())
    assert RowParser(SOCIAL, header).parse(0, "5,6,0.5,x").record == FollowEdge(5, 6)


def test_columns_in_another_order_are_read_by_name():
    columns = list(reversed(FILE_COLUMNS[REC]))
    values = rec_values()
    shuffled = RowParser(REC, columns).parse(0, csv_line([values[c] for c in columns]))
    assert shuffled == parse_fields(REC, values)
    assert shuffled.record.user_id == 3 and shuffled.record.item_id == 3000000000


def test_optional_columns_may_be_absent():
    header = [c for c in FILE_COLUMNS[REC] if c != "time"]
    info = check_header(REC, header)
    assert info.missing_optional == ("time",) and info.extra == ()
    values = rec_values()
    result = RowParser(REC, header).parse(0, csv_line([values[c] for c in header]))
    assert result == parse_fields(REC, values)
    item_header = [c for c in FILE_COLUMNS[ITEM] if "name" not in c]
    assert len(check_header(ITEM, item_header).missing_optional) == 8


def test_duplicate_and_unknown_headers():
    with pytest.raises(InputError, match="twice"):
        check_header(SOCIAL, ["user_id", "user_id", "user_follow_id"])
    with pytest.raises(InputError, match="kuaisar.csv"):
        check_header("kuaisar.csv", ["user_id"])


def test_read_header():
    assert read_header(io.BytesIO(b"\xef\xbb\xbfuser_id,user_follow_id\r\n1,2\n"), SOCIAL) == [
        "user_id", "user_follow_id"]
    with pytest.raises(InputError, match=r"social_network\.csv is empty"):
        read_header(io.BytesIO(b""), SOCIAL)
    with pytest.raises(InputError, match="UTF-8"):
        read_header(io.BytesIO(b"user\xff,x\n"), SOCIAL)


def test_constructor_validation():
    with pytest.raises(ValueError, match=r"`max_words` should be a positive integer. "
                                         r"Received: `max_words=0`"):
        parser_for(SRC, max_words=0)
    with pytest.raises(ValueError, match="period"):
        parser_for(SRC, period=Period(5, 5))
    with pytest.raises(InputError):
        RowParser("rec_inter.tsv", FILE_COLUMNS[REC])


def test_parser_pickles():
    parser = parser_for(SRC, max_words=2)
    clone = pickle.loads(pickle.dumps(parser))
    line = csv_line(list(src_values(keyword="[1, 2, 3]").values()))
    assert clone.parse(3, line) == parser.parse(3, line)
    assert clone.parse(3, line).record.words == (1, 2)


def test_module_imports_neither_tensorflow_nor_beam():
    code = ("import sys, jsr_tf.data.kuaisar; "
            "assert not {'tensorflow', 'apache_beam'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------
# iter_lines.


def test_iter_lines_indices_and_crlf():
    data = b"a,b\r\nx,1\r\ny,2\n\nz,3"
    expected = [(0, "x,1", b"x,1"), (1, "y,2", b"y,2"), (2, "", b""), (3, "z,3", b"z,3")]
    assert list(iter_lines(io.BytesIO(data))) == expected
    after_header = io.BytesIO(data)
    assert read_header(after_header, "x") == ["a", "b"]
    assert list(iter_lines(after_header)) == expected
    assert list(iter_lines(io.BytesIO(data), skip_header=False))[0] == (0, "a,b", b"a,b")


def test_iter_lines_keeps_lone_cr_and_header_only_file():
    assert list(iter_lines(io.BytesIO(b"h\na\rb\r\n"))) == [(0, "a\rb", b"a\rb")]
    assert list(iter_lines(io.BytesIO(b"h\n"))) == []


class ReadlineOnly:
    """A stream with readline() only, like Beam's CompressedFile minus tell()."""

    def __init__(self, data: bytes):
        self._buffer = io.BytesIO(data)

    def readline(self) -> bytes:
        return self._buffer.readline()


def test_iter_lines_needs_only_readline():
    stream = ReadlineOnly(b"h\r\nx\r\ny")
    assert read_header(stream, "x") == ["h"]
    assert list(iter_lines(stream)) == [(0, "x", b"x"), (1, "y", b"y")]
    fresh = ReadlineOnly(b"h\nx\n")
    assert list(iter_lines(fresh, skip_header=True)) == [(0, "x", b"x")]


def test_iter_lines_rejects_text_files():
    with pytest.raises(TypeError):
        list(iter_lines(io.StringIO("h\nx\n")))


# ----------------------------------------------------------------------------------------------
# Properties.


def check_result(result: ParseResult, parser: RowParser, row: int) -> None:
    """The contract of every ``parse`` result."""
    assert isinstance(result, ParseResult)
    assert (result.record is None) != (result.rejection is None)
    if result.rejection is not None:
        assert result.rejection.reason in REASONS
        assert (result.rejection.file, result.rejection.row) == (parser.file_name, row)
        assert isinstance(result.rejection.line, str) and result.notes == ()
        return
    record = result.record
    assert type(record) is RECORD_TYPES[parser.file_name]
    assert set(result.notes) <= set(NOTES) and len(set(result.notes)) == len(result.notes)
    for value in record:
        if isinstance(value, int):
            assert 0 <= value <= INT64_MAX
    if hasattr(record, "ts"):
        assert parser.period.start_ms <= record.ts < parser.period.end_ms
        assert record.row == row
    for words in (getattr(record, "words", ()), getattr(record, "caption", ())):
        assert len(words) <= parser.max_words and all(0 <= w <= INT64_MAX for w in words)


TOKENS = st.one_of(
    st.sampled_from(["", "0", "1", "1.0", "-1", "nan", "inf", "1e999", str(TS), f"{TS}.0",
                     "1.684742000123e12", TS_STRING, "[]", "[1, 2]", "[1,,2]", "[", '"', '""',
                     "USER_INPUT", str(INT64_MAX + 1), "\x00", "\r", "é", " "]),
    st.text(max_size=12))


@st.composite
def fuzz_lines(draw):
    file_name = draw(st.sampled_from(FILES))
    width = len(FILE_COLUMNS[file_name])
    kind = draw(st.sampled_from(["text", "joined", "csv"]))
    if kind == "text":
        return file_name, draw(st.text(max_size=200))
    fields = draw(st.lists(TOKENS, min_size=width - 1, max_size=width + 1))
    return file_name, ",".join(fields) if kind == "joined" else csv_line(fields)


@FUZZ
@given(fuzz_lines(), st.integers(0, 10**9), st.integers(1, 60))
def test_parse_never_raises_on_arbitrary_text(case, row, max_words):
    file_name, line = case
    parser = parser_for(file_name, max_words=max_words)
    check_result(parser.parse(row, line), parser, row)


@FUZZ
@given(st.sampled_from(FILES), st.binary(max_size=300))
def test_iter_lines_and_parse_never_raise_on_arbitrary_bytes(file_name, data):
    header = ",".join(FILE_COLUMNS[file_name]).encode() + b"\n"
    fileobj = io.BytesIO(header + data)
    parser = RowParser(file_name, read_header(fileobj, file_name))
    rows = list(iter_lines(fileobj))
    assert [row for row, _, _ in rows] == list(range(len(rows)))
    parts = data.split(b"\n")
    last = parts.pop()  # Unterminated final line, or b"" when data ends with a newline.
    expected = [part[:-1] if part.endswith(b"\r") else part for part in parts]
    expected += [last] if last else []
    assert [raw for _, _, raw in rows] == expected
    for row, line, raw in rows:
        assert line is None or line.encode() == raw
        check_result(parser.parse(row, line, raw), parser, row)


@given(st.lists(st.sampled_from(['a', ',', '"', '\r', '\n', ' ', 'x,', '",']), max_size=12))
def test_fast_split_agrees_with_csv(pieces):
    line = "".join(pieces)
    try:
        expected = next(csv.reader((line,), strict=True), [])
    except csv.Error:
        expected = None
    try:
        got = kuaisar._split(line)
    except csv.Error:
        got = None
    assert got == expected


# Valid rows generated from values, with the record they must parse to.

IDS = st.integers(0, INT64_MAX)
WORD_LISTS = st.lists(st.integers(0, 10**7), max_size=60)
SEPARATORS = st.sampled_from([", ", ",", " , ", ",\t"])
TIMESTAMPS = st.integers(KUAISAR_PERIOD.start_ms, KUAISAR_PERIOD.end_ms - 1)
FLAGS = st.sampled_from([("0", 0), ("1", 1), ("0.0", 0), ("1.0", 1)])
NAMES = st.text(alphabet="abcXYZ_ 空美食,", min_size=1, max_size=8).map(str.strip).filter(bool)


def list_text(draw, words: List[int]) -> str:
    return "[" + draw(SEPARATORS).join(map(str, words)) + "]"


def time_text(draw, ts: int) -> str:
    if draw(st.booleans()):
        return f"{ts}.0"
    return draw(st.sampled_from([repr(float(ts)), f"{ts:.12e}", f"{ts / 1000:.3f}e3"]))


def clock(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts // 1000, tz=BEIJING).strftime("%Y-%m-%d %H:%M:%S")


@st.composite
def valid_rows(draw) -> Tuple[str, Dict[str, str], object, Tuple[str, ...]]:
    """Returns (file name, {column: text}, expected record, expected notes)."""
    file_name = draw(st.sampled_from(FILES))
    row = 11
    if file_name == REC:
        user, item, ts = draw(IDS), draw(IDS), draw(TIMESTAMPS)
        play, duration = draw(st.floats(0, 1e7)), draw(st.floats(0, 1e7))
        flags = [draw(FLAGS) for _ in range(6)]
        flags[5] = flags[4]  # Keep search_item_related consistent with search (no note).
        values = dict(zip(FILE_COLUMNS[REC], [str(user), str(item), repr(play), repr(duration),
                                              clock(ts), time_text(draw, ts)]
                          + [text for text, _ in flags]))
        click, forward, like, follow, search, related = (v for _, v in flags)
        record = FeedEvent(user, item, ts, row, click, like, follow, forward, search, related,
                           play, duration)
        return file_name, values, record, ()
    if file_name == SRC:
        user, session, item, ts = draw(IDS), draw(IDS), draw(IDS), draw(TIMESTAMPS)
        words = draw(WORD_LISTS.filter(bool))
        clicks = draw(st.integers(0, 5))
        source, item_type = draw(NAMES), draw(NAMES)
        values = dict(zip(FILE_COLUMNS[SRC], [str(user), str(session), clock(ts),
                                              time_text(draw, ts), list_text(draw, words),
                                              source, str(item), str(clicks), item_type]))
        record = SearchRow(user, session, ts, row, tuple(words[:50]), source, item,
                           int(clicks > 0), item_type)
        return file_name, values, record, ("keyword_truncated",) if len(words) > 50 else ()
    if file_name == ITEM:
        item, author, caption = draw(IDS), draw(IDS), draw(WORD_LISTS)
        strings = [draw(NAMES) for _ in range(3)]
        categories = tuple(draw(st.integers(0, 500)) for _ in range(4))
        names = [draw(NAMES) for _ in range(8)]
        texts = [str(item), list_text(draw, caption), str(author)] + strings
        for level in range(4):
            texts += [str(categories[level]), names[2 * level], names[2 * level + 1]]
        record = ItemRecord(item, tuple(caption[:50]), author, *strings, categories)
        notes = ("caption_truncated",) if len(caption) > 50 else ()
        return file_name, dict(zip(FILE_COLUMNS[ITEM], texts)), record, notes
    if file_name == USER:
        ints = [draw(IDS)] + [draw(st.integers(0, 40)) for _ in range(4)]
        return file_name, dict(zip(FILE_COLUMNS[USER], map(str, ints))), UserRecord(*ints), ()
    ints = [draw(IDS), draw(IDS)]
    return file_name, dict(zip(FILE_COLUMNS[SOCIAL], map(str, ints))), FollowEdge(*ints), ()


def column_kind(file_name: str, column: str) -> str:
    """How a column reacts to corruption: the rejection reason, or 'note'/'caption'/'string'."""
    if column in ("time", "search_session_time") or column.endswith(("_name", "_name_en")):
        return "ignored"
    if file_name == ITEM and column in ("item_type", "upload_time", "upload_type"):
        return "string"
    if column == "caption":
        return "caption"
    return {"playing_time": "bad_number", "duration_ms": "bad_number", "click_cnt": "bad_number",
            "timestamp": "bad_timestamp", "search_session_timestamp": "bad_timestamp",
            "keyword": "bad_keyword", "search_source": "empty_string",
            "item_type": "empty_string"}.get(column, (
                "bad_flag" if file_name == REC and column not in ("user_id", "item_id")
                else "bad_category" if file_name == USER and column != "user_id"
                or column.endswith("_category_id") else "bad_id"))


@FUZZ
@given(valid_rows(), st.data())
def test_valid_rows_parse_exactly_and_one_corruption_never_raises(case, data):
    file_name, values, expected, expected_notes = case
    header = data.draw(st.permutations(FILE_COLUMNS[file_name]), label="header")
    parser = RowParser(file_name, header)
    valid = parser.parse(11, csv_line([values[c] for c in header]))
    assert valid == ParseResult(expected, None, expected_notes)

    column = data.draw(st.sampled_from(header), label="column")
    kind = column_kind(file_name, column)
    fields = [values[c] for c in header]
    position = header.index(column)
    text = values[column]
    # Free-text columns accept any (non-blank) text, so only whitespace and blanks can hurt them.
    operations = {"string": ["pad", "drop_field", "add_field"],
                  "empty_string": ["pad", "blank", "drop_field", "add_field"]}.get(
                      kind, ["pad", "blank", "poison", "drop_field", "add_field"])
    operation = data.draw(st.sampled_from(operations), label="operation")
    if operation == "pad":
        fields[position] = data.draw(st.sampled_from([" ", "\t", "  "])) + text + " "
    elif operation == "blank":
        fields[position] = data.draw(st.sampled_from(["", " "]))
    elif operation == "poison":
        at = data.draw(st.integers(0, len(text)), label="at")
        char = data.draw(st.sampled_from('x#%;!é\x00"\'/:?'), label="char")
        fields[position] = text[:at] + char + text[at:]
    elif operation == "drop_field":
        del fields[position]
    else:
        fields.insert(position, data.draw(TOKENS, label="inserted"))
    result = parser.parse(11, csv_line(fields))

    check_result(result, parser, 11)
    if operation in ("drop_field", "add_field"):
        assert result.rejection.reason == "wrong_field_count"
    elif operation == "pad" or kind == "ignored":
        assert result.record == expected
    elif kind == "caption":
        assert result.record == expected._replace(caption=())
        assert result.notes == ("caption_missing" if operation == "blank"
                                else "caption_malformed",)
    else:
        empty_reason = {"bad_keyword": "empty_keyword"}.get(kind, kind)
        assert result.rejection.reason == (empty_reason if operation == "blank" else kind)
