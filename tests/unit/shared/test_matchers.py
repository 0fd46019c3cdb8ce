"""AlertManager matcher syntax and the Source's allowed-values filters."""

from __future__ import annotations

import pytest

from shared.domain import matchers
from shared.domain.matchers import AlertFilter, MatcherError, Operator

LABELS = {"alertname": "KubePodCrashLooping", "namespace": "production", "severity": "critical"}


@pytest.mark.parametrize(
    ("text", "name", "operator", "value"),
    [
        ("severity=critical", "severity", Operator.EQUAL, "critical"),
        ("severity!=critical", "severity", Operator.NOT_EQUAL, "critical"),
        ('namespace=~"prod|staging"', "namespace", Operator.REGEX, "prod|staging"),
        ("namespace!~kube-.*", "namespace", Operator.NOT_REGEX, "kube-.*"),
        ('  severity  =  "critical"  ', "severity", Operator.EQUAL, "critical"),
        ("severity =  critical  ", "severity", Operator.EQUAL, "critical"),
        ("_private=x", "_private", Operator.EQUAL, "x"),
        ("summary=two words", "summary", Operator.EQUAL, "two words"),
        ("expr=a=b", "expr", Operator.EQUAL, "a=b"),
        ("expr!=~x", "expr", Operator.NOT_EQUAL, "~x"),
        ("severity=", "severity", Operator.EQUAL, ""),
        ('severity=""', "severity", Operator.EQUAL, ""),
        ('severity=" padded "', "severity", Operator.EQUAL, " padded "),
    ],
)
def test_parses_name_operator_and_value(
    text: str, name: str, operator: Operator, value: str
) -> None:
    matcher = matchers.parse_matcher(text)
    assert (matcher.name, matcher.operator, matcher.value) == (name, operator, value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'summary="say \"hi\""', 'say "hi"'),
        (r'path="C:\\temp"', "C:\\temp"),
        (r'lines="one\ntwo"', "one\ntwo"),
        # A spurious escape keeps its backslash, as in AlertManager's parser.
        (r'expr="a\.b"', r"a\.b"),
        (r'quote="\""', '"'),
    ],
)
def test_unescapes_quoted_values(text: str, value: str) -> None:
    assert matchers.parse_matcher(text).value == value


@pytest.mark.parametrize(
    "value", ["plain", 'say "hi"', "back\\slash", "new\nline", "", " spaced ", 'mix\\"\n']
)
@pytest.mark.parametrize("operator", list(Operator))
def test_str_round_trips_through_parse(operator: Operator, value: str) -> None:
    matcher = matchers.Matcher("label", operator, value)
    printed = str(matcher)
    assert "\n" not in printed  # one line, as AlertManager prints it
    assert matchers.parse_matcher(printed) == matcher


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("severity=critical", {"severity": "critical"}, True),
        ("severity=critical", {"severity": "warning"}, False),
        ("severity=critical", {"severity": "critical-ish"}, False),
        ("severity!=critical", {"severity": "critical"}, False),
        ("severity!=critical", {"severity": "warning"}, True),
        ('namespace=~"prod|staging"', {"namespace": "staging"}, True),
        ('namespace=~"prod|staging"', {"namespace": "dev"}, False),
        ('namespace!~"prod|staging"', {"namespace": "staging"}, False),
        ('namespace!~"prod|staging"', {"namespace": "dev"}, True),
        ('summary="say \\"hi\\""', {"summary": 'say "hi"'}, True),
        ('summary="say \\"hi\\""', {"summary": 'say \\"hi\\"'}, False),
        ('expr="a.b"', {"expr": "axb"}, False),
        ('expr=~"a.b"', {"expr": "axb"}, True),
    ],
)
def test_each_operator_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert matchers.parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ('namespace=~"prod"', "production", False),
        ('namespace=~"prod"', "preprod", False),
        ('namespace=~"prod"', "prod", True),
        ('namespace=~"prod.*"', "production", True),
        # The alternation is grouped before anchoring: not ^prod|staging$.
        ('namespace=~"prod|staging"', "production", False),
        ('namespace=~"prod|staging"', "pre-staging", False),
        ('namespace!~"prod"', "production", True),
        ('namespace!~"prod|staging"', "production", True),
    ],
)
def test_regexes_are_anchored_at_both_ends(text: str, value: str, expected: bool) -> None:
    assert matchers.parse_matcher(text).matches({"namespace": value}) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("team=", True),
        ('team=""', True),
        ("team=ops", False),
        ("team!=ops", True),
        ("team!=", False),
        ('team=~".*"', True),
        ('team=~".+"', False),
        ('team!~".+"', True),
        ('team!~""', False),
    ],
)
def test_missing_label_matches_as_empty_string(text: str, expected: bool) -> None:
    assert matchers.parse_matcher(text).matches({"alertname": "X"}) is expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "severity",
        "severity critical",
        "=critical",
        "1abc=x",
        "sev-erity=x",
        "severity~=x",
        'severity="unterminated',
        'severity="trailing\\"',
        'severity="a"b"',
        'severity=a"b',
        'severity="a" extra',
        "{severity=critical}",
    ],
)
def test_unparseable_matcher_raises_with_its_text(text: str) -> None:
    with pytest.raises(MatcherError) as caught:
        matchers.parse_matcher(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("operator", ["=~", "!~"])
@pytest.mark.parametrize("regex", ["(unclosed", "[a-", "*prod", "a{2,1}"])
def test_bad_regex_raises_with_its_text(operator: str, regex: str) -> None:
    text = f'namespace{operator}"{regex}"'
    with pytest.raises(MatcherError, match="bad regular expression") as caught:
        matchers.parse_matcher(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize("operator", ["=", "!="])
def test_equality_values_are_not_compiled_as_regexes(operator: str) -> None:
    matcher = matchers.parse_matcher(f'namespace{operator}"(unclosed"')
    assert matcher.matches({"namespace": "(unclosed"}) is (operator == "=")


def test_matcher_error_is_a_value_error() -> None:
    # Callers that validate resources catch ValueError from any parser.
    with pytest.raises(ValueError, match="cannot parse matcher"):
        matchers.parse_matcher("nonsense")


def test_inline_case_insensitive_flag_is_accepted() -> None:
    matcher = matchers.parse_matcher('severity=~"(?i)critical"')
    assert matcher.matches({"severity": "CRITICAL"})
    assert not matcher.matches({"severity": "CRITICAL-ish"})


class TestAlertFilter:
    def test_empty_filter_admits_everything(self) -> None:
        alert_filter = AlertFilter.build(None, None)
        assert alert_filter.admits({})
        assert alert_filter.admits(LABELS)

    @pytest.mark.parametrize(
        ("severity", "expected"),
        [("critical", True), ("warning", True), ("info", False), ("", False)],
    )
    def test_allowed_values(self, severity: str, expected: bool) -> None:
        alert_filter = AlertFilter.build({"severity": ["critical", "warning"]}, None)
        assert alert_filter.admits({**LABELS, "severity": severity}) is expected

    def test_missing_label_fails_allowed_values_even_if_empty_is_allowed(self) -> None:
        alert_filter = AlertFilter.build({"team": ["", "ops"]}, None)
        assert not alert_filter.admits({"alertname": "X"})
        assert alert_filter.admits({"alertname": "X", "team": ""})

    def test_every_allowed_values_rule_must_hold(self) -> None:
        alert_filter = AlertFilter.build(
            {"severity": ["critical"], "namespace": ["production"]}, None
        )
        assert alert_filter.admits(LABELS)
        assert not alert_filter.admits({**LABELS, "namespace": "staging"})
        assert not alert_filter.admits({**LABELS, "severity": "warning"})

    def test_every_matcher_must_hold(self) -> None:
        alert_filter = AlertFilter.build(
            None, ['namespace=~"prod.*"', "severity!=info", "alertname=KubePodCrashLooping"]
        )
        assert alert_filter.admits(LABELS)
        assert not alert_filter.admits({**LABELS, "severity": "info"})
        assert not alert_filter.admits({**LABELS, "namespace": "dev"})
        assert not alert_filter.admits({**LABELS, "alertname": "Other"})

    def test_filters_and_matchers_combine(self) -> None:
        alert_filter = AlertFilter.build({"severity": ["critical"]}, ["namespace!~kube-.*"])
        assert alert_filter.admits(LABELS)
        assert not alert_filter.admits({**LABELS, "namespace": "kube-system"})
        assert not alert_filter.admits({**LABELS, "severity": "warning"})

    def test_build_parses_matchers(self) -> None:
        alert_filter = AlertFilter.build(None, ['team="ops"'])
        assert alert_filter.matchers == (matchers.Matcher("team", Operator.EQUAL, "ops"),)

    def test_build_rejects_bad_matchers(self) -> None:
        with pytest.raises(MatcherError, match="team=~"):
            AlertFilter.build({"severity": ["critical"]}, ["severity=critical", "team=~(oops"])


class TestRe2:
    """Matchers are RE2, as in AlertManager: linear time, and no backtracking features."""

    def test_catastrophic_pattern_matches_in_linear_time(self) -> None:
        import time

        matcher = matchers.parse_matcher(r'instance=~"([a-z0-9]+\.?)+:9100"')
        started = time.monotonic()
        for length in (34, 1000, 100_000):
            assert not matcher.matches({"instance": "a" * length + "!"})
        # Python's re needs minutes for the first one alone.
        assert time.monotonic() - started < 1.0
        assert matcher.matches({"instance": "node1.example:9100"})

    @pytest.mark.parametrize(
        ("regex", "reason"),
        [
            (r"(a)\1", "invalid escape sequence"),
            ("(?=prod)", "invalid perl operator"),
            ("(?<!kube-).*", "invalid perl operator"),
            ("a++", "bad repetition operator"),
            ("a{1001}", "invalid repetition size"),
        ],
    )
    def test_what_re2_cannot_compile_is_refused_with_the_reason(
        self, regex: str, reason: str
    ) -> None:
        with pytest.raises(MatcherError, match="RE2") as caught:
            matchers.parse_matcher(f'namespace=~"{regex}"')
        assert reason in str(caught.value)

    def test_anchored_like_alertmanager_even_with_alternation(self) -> None:
        matcher = matchers.parse_matcher('namespace=~"prod|staging"')
        assert not matcher.matches({"namespace": "production"})
        assert not matcher.matches({"namespace": "pre-staging"})
        assert matchers.parse_matcher('namespace=~"prod.*"').matches({"namespace": "production"})

    def test_dot_does_not_match_a_newline_as_in_go(self) -> None:
        assert not matchers.parse_matcher('summary=~"a.b"').matches({"summary": "a\nb"})
        assert matchers.parse_matcher('summary=~"(?s)a.b"').matches({"summary": "a\nb"})
