from __future__ import annotations

import pytest

from imagine import ConfigError, load_settings


def test_defaults(imagine_home):
    s = load_settings()
    assert s.home == imagine_home and s.model == "llama-cpp" and s.log is True
    assert s.db_path == imagine_home / "logs.db" and s.blob_dir == imagine_home / "blobs"


def test_precedence_argument_over_env_over_file_over_default(imagine_home, monkeypatch):
    imagine_home.mkdir(parents=True)
    (imagine_home / "config.toml").write_text('model = "from-file"\n[limits]\nmax_bytes = 1000\n')
    assert load_settings().model == "from-file"
    assert load_settings().limits.max_bytes == 1000
    monkeypatch.setenv("IMAGINE_MODEL", "from-env")
    monkeypatch.setenv("IMAGINE_MAX_BYTES", "2000")
    assert load_settings().model == "from-env"
    assert load_settings().limits.max_bytes == 2000
    assert load_settings(model="from-arg").model == "from-arg"


def test_home_defaults_to_platform_dir(monkeypatch):
    import platformdirs

    monkeypatch.delenv("IMAGINE_HOME")
    assert str(load_settings().home) == platformdirs.user_data_dir("imagine", appauthor=False)


def test_bad_config_names_the_field_and_source(imagine_home, monkeypatch):
    imagine_home.mkdir(parents=True)
    (imagine_home / "config.toml").write_text('modle = "x"\n')
    with pytest.raises(ConfigError, match="'modle'.*config.toml"):
        load_settings()
    (imagine_home / "config.toml").write_text('model = \n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()
    (imagine_home / "config.toml").unlink()
    monkeypatch.setenv("IMAGINE_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="limits.max_bytes.*IMAGINE_MAX_BYTES"):
        load_settings()


def test_bad_engine_settings_name_the_table(imagine_home):
    from imagine import config, get_registry

    imagine_home.mkdir(parents=True)
    (imagine_home / "config.toml").write_text('[engines.llama-cpp]\nn_ctx = "huge"\n')
    config.reset_settings()
    with pytest.raises(ConfigError, match=r"\[engines.llama-cpp\] n_ctx"):
        get_registry().engine("llama-cpp")
