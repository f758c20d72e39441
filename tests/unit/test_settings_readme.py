"""Every setting is declared once (settings.py); docs/CONFIGURATION.md's table is generated from it.

The doc's table must be exactly what the generator makes now, so a setting added, removed or
reworded in settings.py fails here until `python -m my_mk1_homework.settings_doc --write` is run.
"""
from my_mk1_homework import settings, settings_doc


def test_configuration_doc_table_is_generated_from_settings():
    documented = settings_doc.documented(settings_doc.DOC.read_text())
    assert documented is not None, f"{settings_doc.DOC} lost its generated settings block"
    assert documented == settings_doc.block(), (
        "docs/CONFIGURATION.md is stale: run python -m my_mk1_homework.settings_doc --write")


def test_generated_table_has_one_row_per_setting():
    rows = settings_doc.table().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list(settings.SETTINGS)


def test_defaults_are_shown_as_typed_not_as_python_values():
    shown = {name: settings_doc.default_text(s) for name, s in settings.SETTINGS.items()}
    assert shown["MK1_HOME"] == "`.mk1` (in the project root)"   # not this clone's absolute path
    assert shown["MK1_CLUSTER"] == "`0` (off)"
    assert shown["AWS_ENDPOINT_URL"] == "(unset)" and shown["MK1_ALPHA_LOAD_SECONDS"] == "(unset)"
    assert shown["MK1_PRICE_GB_SECOND"] == "`0.0000166667`"


def test_load_reads_environment_each_time():
    s = settings.load({"MK1_DISPATCHER_PORT": "9123", "MK1_KEEPALIVE_MS": "0"})
    assert s.MK1_DISPATCHER_PORT == 9123 and s.MK1_KEEPALIVE_MS == 0
    assert s.dispatcher_url == "http://127.0.0.1:9123"
    assert settings.load({}).MK1_DISPATCHER_PORT == 8000
    assert settings.load({"AWS_ENDPOINT_URL": "http://localstack:4566"}).embedded_aws is False
    assert settings.load({}).embedded_aws is True
