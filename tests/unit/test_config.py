"""config.py: good.toml → Settings, every bad_*.toml → its `# expect:` line, secrets."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from aggregator import config, config_values
from aggregator.errors import ConfigError
from aggregator.models import Member
from aggregator.settings import (
    EmailSettings,
    LogSettings,
    PollSettings,
    Secret,
    ServerSettings,
    Settings,
    SiteSettings,
    WebhookSettings,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "config"
REPO = Path(__file__).parents[2]
MEMBER = '[[members]]\nid = "a"\nname = "A"\nfeed = "https://a.jp/rss"\n'
SECRET_ENV = {"KAIRAN_TEST_SMTP_PASSWORD": "hunter2-never-shown"}


def load(text: str, environ: dict[str, str] | None = None) -> Settings:
    return config.parse_config_text(text, Path("config.toml"), environ or {})


def error_of(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(text, environ)
    return str(caught.value)


# --- golden files -------------------------------------------------------------------


def test_good_config_loads_to_the_expected_settings() -> None:
    path = FIXTURES / "good.toml"
    settings = config.load_settings(path, SECRET_ENV)
    assert settings == Settings(
        path=path,
        data_dir=FIXTURES / "var" / "kairan",
        site=SiteSettings(
            title="自治体AI活用ポータル",
            base_url="https://example.jp/kairan/",
            language="en",
            timezone="Europe/Berlin",
            contact="ops@example.jp",
        ),
        poll=PollSettings(
            interval=5400,
            jitter=0.2,
            concurrency=50,
            per_host=4,
            connect_timeout=2.5,
            timeout=60.0,
            max_bytes=512 * 1024,
            max_backoff=2 * 86400,
            max_redirects=3,
            user_agent="KairanTest/1.0 (+https://example.jp/kairan/)",
            notify_backlog=True,
        ),
        email=EmailSettings(
            host="smtp.example.jp",
            port=587,
            security="starttls",
            username="kairan",
            password=Secret("hunter2-never-shown"),
            from_address="kairan@example.jp",
            reply_to="office@example.jp",
            concurrency=4,
            timeout=20.0,
            sender_name="自治体AI活用ポータル事務局",
            postal_address="神奈川県横須賀市小川町11番地",
        ),
        webhooks=WebhookSettings(
            timeout=5.0, retry_schedule=(0, 60, 3600), allow_private_addresses=True
        ),
        server=ServerSettings(host="::1", port=9000),
        log=LogSettings(level="debug", format="json"),
        members=(
            Member(
                id="yokosuka",
                name="横須賀市",
                feed="https://govgov.ai/rss",
                site="https://govgov.ai/",
                prefecture="神奈川県",
                tags=("municipality", "kanagawa"),
            ),
            Member(
                id="example-2",
                name="Example",
                feed="http://feeds.example.org/atom.xml",
                paused=True,
            ),
        ),
    )


BAD_FILES = sorted(FIXTURES.glob("bad_*.toml"))


def test_there_is_a_bad_file_per_error_class() -> None:
    assert len(BAD_FILES) >= 13


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_bad_config_is_refused_with_its_expected_line(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = path.read_text(encoding="utf-8").splitlines()[0]
    assert expected.startswith("# expect: ")
    monkeypatch.chdir(FIXTURES)  # so that the message shows the bare file name
    with pytest.raises(ConfigError) as caught:
        config.load_settings(Path(path.name), {})
    assert str(caught.value) == expected.removeprefix("# expect: ")
    assert caught.value.exit_code == 2


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as caught:
        config.load_settings(path, {})
    assert str(caught.value) == (
        f"{path}: no such file; run `kairan init` to create one"
    )


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes('[site]\ntitle = "横須賀"\n'.encode("shift_jis"))
    with pytest.raises(ConfigError, match=r"not utf-8 \(byte \d+\)"):
        config.load_settings(path, {})


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("", encoding="utf-8")
    assert config.load_settings(path, {}) == Settings(
        path=path, data_dir=tmp_path / "data"
    )


# --- secrets ------------------------------------------------------------------------


def test_secret_value_never_shows_in_repr_or_str() -> None:
    settings = config.load_settings(FIXTURES / "good.toml", SECRET_ENV)
    password = settings.email.password
    assert password is not None
    assert password.reveal() == "hunter2-never-shown"
    for shown in (repr(password), str(password), repr(settings), str(settings.email)):
        assert "hunter2" not in shown


def test_plain_password_is_a_secret_too() -> None:
    settings = load('[email]\npassword = "plain-pw"')
    assert settings.email.password == Secret("plain-pw")
    assert "plain-pw" not in repr(settings)


def test_wrong_typed_secret_does_not_echo_the_value() -> None:
    message = error_of("[email]\npassword = 123456789")
    assert message == "config.toml: email.password: must be a string, got an integer"


def test_env_secret_with_bad_variable_name_is_refused() -> None:
    message = error_of('[email]\npassword = "env:NOT-A-NAME"')
    assert message == (
        'config.toml: email.password: must be "env:NAME" with NAME'
        " an environment variable name"
    )


def test_empty_environment_variable_counts_as_unset() -> None:
    message = error_of('[email]\npassword = "env:PW"', {"PW": ""})
    assert message == "config.toml: email.password: environment variable PW is not set"


def test_load_settings_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[email]\npassword = "env:KAIRAN_TEST_PW"\n', encoding="utf-8")
    monkeypatch.setenv("KAIRAN_TEST_PW", "from-env")
    settings = config.load_settings(path)
    assert settings.email.password == Secret("from-env")


# --- values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90),
        (0, 0),
        ("90", 90),
        ("90s", 90),
        ("30m", 1800),
        ("30 min", 1800),
        ("1h", 3600),
        ("2 hours", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1.5h", 5400),
        ("1W", 604800),
        ("30分", 1800),
        ("1時間", 3600),
    ],
)
def test_parse_duration(value: object, seconds: int) -> None:
    assert (
        config_values.parse_duration(value, "poll.interval", Path("c.toml")) == seconds
    )


@pytest.mark.parametrize(
    "value", ["", "abc", "1h 30", "-5m", "5 parsecs", "1,5h", "m30", True, 1.5, [1]]
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        config_values.parse_duration(value, "poll.interval", Path("c.toml"))
    assert str(caught.value).startswith(
        'c.toml: poll.interval: must be a duration such as "30m" or "1h30m", got '
    )


def test_negative_seconds_are_refused() -> None:
    with pytest.raises(ConfigError, match="must not be negative, got -1"):
        config_values.parse_duration(-1, "webhooks.retry_schedule[0]", Path("c.toml"))


@pytest.mark.parametrize(
    ("value", "size"),
    [(2048, 2048), ('"5MB"', 5_000_000), ('"512KiB"', 524_288), ('"1.5 mib"', 1572864)],
)
def test_max_bytes_forms(value: object, size: int) -> None:
    assert load(f"[poll]\nmax_bytes = {value}").poll.max_bytes == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[poll]\ntimeout = 0", "poll.timeout: must be more than 0 s, got 0 s"),
        ("[poll]\ntimeout = 301", "poll.timeout: must be at most 5 min, got 301 s"),
        ("[poll]\njitter = 0.6", "poll.jitter: must be between 0 and 0.5, got 0.6"),
        (
            "[poll]\nconcurrency = true",
            "poll.concurrency: must be an integer, got a boolean",
        ),
        ("[poll]\nper_host = 51", "poll.per_host: must be between 1 and 50, got 51"),
        (
            "[poll]\nmax_redirects = 11",
            "poll.max_redirects: must be between 0 and 10, got 11",
        ),
        ('[poll]\nmax_backoff = "8d"', "poll.max_backoff: must be at most 7 d, got 8d"),
        (
            '[poll]\nuser_agent = "Kairan\\n(+https://x.jp/)"',
            "poll.user_agent: must be one line of printable text",
        ),
        ("[server]\nport = 0", "server.port: must be between 1 and 65535, got 0"),
        (
            '[log]\nlevel = "trace"',
            'log.level: must be one of "debug", "info",'
            ' "warning", "error", got "trace"',
        ),
        (
            '[email]\nfrom = "nobody"',
            'email.from: must be an e-mail address, got "nobody"',
        ),
        (
            '[email]\nsecurity = "ssl"',
            'email.security: must be one of "none", "starttls", "tls", got "ssl"',
        ),
        (
            "[email]\nbounce_limit = 0",
            "email.bounce_limit: must be between 1 and 100, got 0",
        ),
        (
            '[email]\nconfirm_ttl = "5m"',
            "email.confirm_ttl: must be at least 1 h, got 5m",
        ),
        (
            "[email]\nretry_schedule = []",
            "email.retry_schedule: must not be empty",
        ),
        (
            '[email]\nunsubscribe_address = "nobody"',
            'email.unsubscribe_address: must be an e-mail address, got "nobody"',
        ),
        (
            "[webhooks]\nretry_schedule = []",
            "webhooks.retry_schedule: must not be empty",
        ),
        (
            '[webhooks]\nretry_schedule = ["1m", "later"]',
            'webhooks.retry_schedule[1]: must be a duration such as "30m" or "1h30m",'
            ' got "later"',
        ),
        (
            '[site]\ncontact = "call us"',
            'site.contact: must be a url or an e-mail address, got "call us"',
        ),
        ('[site]\ntitle = "  "', "site.title: must not be empty"),
        (
            '[site]\nbase_url = "https://x.jp/?a=1"',
            'site.base_url: must not have a query or fragment, got "https://x.jp/?a=1"',
        ),
        (
            '[site]\nbase_url = "https://x.jp:port/"',
            'site.base_url: must be an absolute http(s) url, got "https://x.jp:port/"',
        ),
        (
            "[storage]\ndata_dir = 3",
            "storage.data_dir: must be a string, got an integer",
        ),
        ("[storage]\npath = 'x'", "storage.path: unknown key"),
        (
            MEMBER + 'tags = "x"',
            "members[0].tags: must be an array of strings, got a string",
        ),
        (
            MEMBER + 'tags = ["", "b"]',
            "members[0].tags[0]: must not be empty",
        ),
        (
            MEMBER + 'site = "a.jp"',
            'members[0].site: must be an absolute http(s) url, got "a.jp"',
        ),
        (
            MEMBER + "paused = 1",
            "members[0].paused: must be a boolean (true or false), got an integer",
        ),
        (
            "[site]\nlanguage = 2026-11-01",
            "site.language: must be a string, got a date",
        ),
    ],
)
def test_bad_values_are_named(text: str, message: str) -> None:
    assert error_of(text) == f"config.toml: {message}"


def test_base_url_gains_a_trailing_slash() -> None:
    settings = load('[site]\nbase_url = "https://example.jp/kairan"')
    assert settings.site.base_url == "https://example.jp/kairan/"


@pytest.mark.parametrize(
    "contact", ["", "ops@example.jp", "mailto:ops@example.jp", "https://example.jp/"]
)
def test_contact_forms(contact: str) -> None:
    assert load(f'[site]\ncontact = "{contact}"').site.contact == contact


@pytest.mark.parametrize(
    "agent",
    ["Kairan/1.0 (+https://example.jp/)", "Kairan/1.0 (ops@example.jp)", ""],
)
def test_user_agent_with_a_contact_is_accepted(agent: str) -> None:
    assert load(f'[poll]\nuser_agent = "{agent}"').poll.user_agent == agent


def test_optional_strings_empty_means_unset() -> None:
    settings = load(
        '[email]\nusername = ""\nreply_to = ""\npassword = ""\n'
        + MEMBER
        + 'site = ""\nprefecture = ""'
    )
    assert (settings.email.username, settings.email.reply_to) == (None, None)
    assert settings.email.password is None
    assert (settings.members[0].site, settings.members[0].prefecture) == (None, None)


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    settings = load(f'[storage]\ndata_dir = "{tmp_path}/state"')
    assert settings.data_dir == tmp_path / "state"


def test_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "config.toml"
    data = {"storage": {"data_dir": "../var/lib"}}
    settings = config.parse_settings(data, path, {})
    assert settings.data_dir == tmp_path / "var" / "lib"
    assert settings.database_path == tmp_path / "var" / "lib" / "kairan.sqlite3"


def test_first_error_in_file_order_is_reported() -> None:
    message = error_of('[site]\nlanguage = "fr"\n[poll]\ninterval = 1')
    assert message.startswith("config.toml: site.language:")


# --- finding the file ---------------------------------------------------------------


def test_find_config_path_prefers_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIRAN_CONFIG", "/etc/kairan/env.toml")
    assert config.find_config_path("given.toml") == Path("given.toml")
    assert config.find_config_path(Path("/x/y.toml")) == Path("/x/y.toml")


def test_find_config_path_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIRAN_CONFIG", "/etc/kairan/env.toml")
    assert config.find_config_path(None) == Path("/etc/kairan/env.toml")


def test_find_config_path_defaults_to_the_working_directory() -> None:
    assert config.find_config_path(None) == Path("config.toml")


# --- the init template and the shipped config ---------------------------------------


def test_init_template_loads_to_the_defaults(tmp_path: Path) -> None:
    settings = config.parse_config_text(
        config.INIT_TEMPLATE, tmp_path / "config.toml", {}
    )
    assert settings == Settings(
        path=tmp_path / "config.toml", data_dir=tmp_path / "data"
    )


SECTIONS = {
    "site": SiteSettings,
    "poll": PollSettings,
    "email": EmailSettings,
    "webhooks": WebhookSettings,
    "server": ServerSettings,
    "log": LogSettings,
}


@pytest.mark.parametrize("section", [*SECTIONS, "storage", "members"])
def test_init_template_documents_every_key(section: str) -> None:
    text = config.INIT_TEMPLATE
    if section in SECTIONS:
        keys = [f.name for f in dataclasses.fields(SECTIONS[section])]
        assert f"\n[{section}]\n" in text
    elif section == "storage":
        keys = ["data_dir"]
    else:
        keys = [f.name for f in dataclasses.fields(Member)]
        assert "\n# [[members]]\n" in text
    for key in keys:
        written = "from" if key == "from_address" else key
        assert f"\n{written} = " in text or f"\n# {written} = " in text, written


def test_shipped_config_lists_the_known_members() -> None:
    settings = config.load_settings(REPO / "config.toml", {})
    rows = [(m.id, m.name, m.prefecture, m.feed, m.tags) for m in settings.members]
    assert rows == [
        (
            "govgov-magazine",
            "自治体AI活用マガジン",
            None,
            "https://govgov.ai/m/m8f7256e10f43/rss",
            ("magazine",),
        ),
        (
            "yokosuka",
            "横須賀市",
            "神奈川県",
            "https://govgov.ai/rss",
            ("municipality",),
        ),
        (
            "tokyo",
            "東京都",
            "東京都",
            "https://note.com/kouzoukaikaku/rss",
            ("prefecture",),
        ),
        ("kobe", "神戸市", "兵庫県", "https://kobe-note.jp/rss", ("municipality",)),
        (
            "shiki",
            "志木市",
            "埼玉県",
            "https://note.com/shiki_system/rss",
            ("municipality",),
        ),
        (
            "meguro",
            "目黒区",
            "東京都",
            "https://note.com/meguro_city/rss",
            ("municipality",),
        ),
        (
            "kuwana",
            "桑名市",
            "三重県",
            "https://kuwana-city.note.jp/rss",
            ("municipality",),
        ),
    ]
    assert settings.site.title == "自治体AI活用ポータル"
    assert (settings.site.language, settings.site.timezone) == ("ja", "Asia/Tokyo")
    assert settings.site.base_url == "https://example.jp/kairan/"
    assert settings.poll == PollSettings()  # the defaults, spelt out


def test_shipped_config_names_each_members_source() -> None:
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    tables = text.split("\n[[members]]\n")[1:]
    assert len(tables) == 7
    for table in tables:
        assert table.startswith("# Source: "), table.splitlines()[1]
    assert "follow note's `/rss` pattern" in text


def test_shipped_config_keeps_members_without_a_feed_commented_out() -> None:
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    note = "# feed not yet known; their posts arrive through the magazine feed\n"
    blocks = text.split("\n# [[members]]\n" + note)[1:]
    commented = []
    for block in blocks:
        lines = block.split("\n\n")[0].splitlines()
        table = tomllib.loads("\n".join(line.removeprefix("# ") for line in lines))
        commented.append((table["name"], table["prefecture"], table["feed"]))
    assert commented == [
        ("都城市", "宮崎県", ""),
        ("つくば市", "茨城県", ""),
        ("千葉市", "千葉県", ""),
        ("熊本市", "熊本県", ""),
        ("戸田市", "埼玉県", ""),
    ]
