"""Tests for the unified social credit code (GB 32100-2015) in ``backend.domain.uscc``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.domain.uscc import (
    ALPHABET,
    WEIGHTS,
    UsccError,
    check_character,
    entity_kind,
    is_valid,
    make_code,
    normalise,
    org_check_character,
    validate,
)

# Published codes of large companies.  Each also passes the GB 11714 check of its embedded
# organisation code (position 17), an independent check that none of them was mistyped.
PUBLISHED = (
    "914403001922038216",
    "91440300708461136T",
    "91110000710926094P",
    "91110000710925462X",
    "91330100799655058B",
    "91110108551385082Q",
    "91110000600037341L",
)

alphabet_char = st.sampled_from(ALPHABET)
org9 = st.text(ALPHABET, min_size=9, max_size=9)
division = st.text("0123456789", min_size=6, max_size=6)


def test_constants() -> None:
    assert len(ALPHABET) == 31
    assert not set("IOZSV") & set(ALPHABET)
    assert WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    assert validate(code) == code
    assert is_valid(code)
    assert check_character(code[:17]) == code[17]
    assert org_check_character(code[8:16]) == code[16]
    assert entity_kind(code) == "企业"


@pytest.mark.parametrize("code", PUBLISHED)
def test_corrupted_published_codes_are_rejected(code: str) -> None:
    wrong = ALPHABET[(ALPHABET.index(code[17]) + 1) % 31]
    with pytest.raises(UsccError, match=f"should be '{code[17]}', not '{wrong}'"):
        validate(code[:17] + wrong)
    swapped = code[:10] + code[11] + code[10] + code[12:]  # adjacent transposition
    assert swapped == code or not is_valid(swapped)


def test_wrong_length_message_names_the_length() -> None:
    with pytest.raises(UsccError, match="18 characters, got 17"):
        validate(PUBLISHED[0][:17])
    with pytest.raises(UsccError, match="got 0"):
        validate("   ")
    with pytest.raises(UsccError, match="got 19"):
        validate(PUBLISHED[0] + "0")


@pytest.mark.parametrize("bad", "IOZSV")
def test_excluded_letters_are_named_with_their_position(bad: str) -> None:
    code = PUBLISHED[0][:8] + bad + PUBLISHED[0][9:]
    with pytest.raises(UsccError) as err:
        validate(code)
    message = str(err.value)
    assert f"'{bad}' at position 9" in message
    assert "I, O, Z, S and V are never used" in message


def test_other_forbidden_characters() -> None:
    with pytest.raises(UsccError, match="'-' at position 18 is not allowed"):
        validate(PUBLISHED[0][:17] + "-")
    with pytest.raises(UsccError, match="'东' at position 1"):
        validate("东" + PUBLISHED[0][1:])


def test_division_must_be_digits() -> None:
    code = make_code("9", "1", "441900", "MA4UH3XKX")
    bad = code[:4] + "A" + code[5:]
    with pytest.raises(UsccError, match="positions 3–8"):
        validate(bad)


def test_wrong_check_character_message() -> None:
    code = PUBLISHED[1]  # ends in T
    with pytest.raises(UsccError) as err:
        validate(code[:17] + "Y")
    assert str(err.value) == "check character should be 'T', not 'Y'"


def test_normalisation() -> None:
    full_width = "９１４４０３００１９２２０３８２１６"
    assert validate(full_width) == PUBLISHED[0]
    assert validate(" 9144 0300 7084 6113 6t\u3000") == PUBLISHED[1]
    assert validate("９１４４０３００７０８４６１１３６ｔ") == PUBLISHED[1]
    assert normalise("ａｂ　c") == "ABC"


def test_entity_kind() -> None:
    body = "441900MA4UH3XKX"
    assert entity_kind(make_code("9", "1", body[:6], body[6:])) == "企业"
    assert entity_kind(make_code("9", "2", body[:6], body[6:])) == "个体工商户"
    assert entity_kind(make_code("9", "3", body[:6], body[6:])) == "农民专业合作社"
    assert entity_kind(make_code("9", "9", body[:6], body[6:])) is None
    assert entity_kind(make_code("5", "1", body[:6], body[6:])) is None  # 民政: 社会团体
    assert entity_kind(make_code("1", "2", body[:6], body[6:])) is None
    assert entity_kind("９２４４") == "个体工商户"
    assert entity_kind("") is None


def test_org_check_character() -> None:
    assert org_check_character("MA59C2GU") == "2"
    assert org_check_character("60003734") == "1"
    with pytest.raises(UsccError):
        org_check_character("6000373")


def test_make_code_rejects_bad_parts() -> None:
    with pytest.raises(UsccError, match="division must be 6 digits"):
        make_code("9", "1", "44190A", "MA4UH3XKX")
    with pytest.raises(UsccError, match="org9 must have 9"):
        make_code("9", "1", "441900", "MA4UH3XK")
    with pytest.raises(UsccError, match="'O' at position 9"):
        make_code("9", "1", "441900", "OA4UH3XKX")
    with pytest.raises(UsccError, match="17 characters, got 3"):
        check_character("914")


@given(alphabet_char, alphabet_char, division, org9)
def test_make_code_always_validates(authority: str, kind: str, div: str, org: str) -> None:
    code = make_code(authority, kind, div, org)
    assert len(code) == 18
    assert code[:17] == authority + kind + div + org
    assert validate(code) == code


@given(
    alphabet_char,
    alphabet_char,
    division,
    org9,
    st.integers(0, 17),
    st.integers(1, 30),
)
def test_any_single_substitution_is_detected(
    authority: str, kind: str, div: str, org: str, position: int, shift: int
) -> None:
    code = make_code(authority, kind, div, org)
    replacement = ALPHABET[(ALPHABET.index(code[position]) + shift) % 31]
    assert replacement != code[position]
    corrupted = code[:position] + replacement + code[position + 1 :]
    assert not is_valid(corrupted)


def test_single_substitution_exhaustively() -> None:
    """The weights are non-zero mod the prime 31, so every one of the 18 × 30 substitutions
    changes Σ value·weight mod 31 (or the check character itself)."""
    assert all(w % 31 for w in WEIGHTS)
    for code in PUBLISHED:
        for position in range(18):
            for c in ALPHABET:
                if c != code[position]:
                    assert not is_valid(code[:position] + c + code[position + 1 :])
