"""A results folder's ``config.yaml``, read as untrusted data.

Lightning writes the run's settings next to its results; the folder may come from someone
else, so nothing in it may import or run code. The reader here:

* loads the YAML with the safe loader (plain values only);
* allows a component (``class_path``) only when it names a class defined in lsap (its
  module inside the installed ``lsap`` package) or is one of the class paths the caller
  passes explicitly in ``allowed``; the check runs on the text, before anything is imported;
* rebuilds a module from its settings with the parser that wrote them (jsonargparse on the
  module class's typed ``__init__``), so an unknown or ill-typed setting is refused by name.

Everyone who reads a run's config goes through :func:`read_run_config`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from lsap.errors import BadFileError, MissingInputError, UnsafeFileError

__all__ = [
    "RUN_CONFIG",
    "check_components",
    "model_section",
    "module_from_run_config",
    "read_run_config",
    "resolve_component",
]

RUN_CONFIG = "config.yaml"
_PACKAGE = "lsap"


def config_file(path: str | Path) -> Path:
    """``path`` itself when it is a file, else ``path/config.yaml``."""
    path = Path(path).expanduser()
    return path / RUN_CONFIG if path.is_dir() else path


def read_run_config(path: str | Path) -> dict[str, Any]:
    """The plain data of a run config (a results folder or the file itself): the YAML safe
    loader, nothing imported. Raises :class:`MissingInputError` / :class:`BadFileError`."""
    import yaml

    file = config_file(path)
    if not file.is_file():
        raise MissingInputError(f"run config not found: '{file}'")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise BadFileError(f"'{file}' is not a readable YAML run config: {' '.join(str(error).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadFileError(f"'{file}' is not a run config (a mapping of sections), got {type(data).__name__}")
    return data


def _lsap_module_file(module: str) -> bool:
    """Whether ``module`` is a module of the installed lsap package (found without running it)."""
    if module != _PACKAGE and not module.startswith(_PACKAGE + "."):
        return False
    if any(part.startswith("__") for part in module.split(".")):
        return False  # lsap.__main__ runs the command line when imported
    try:
        spec = importlib.util.find_spec(module)  # imports only lsap's own parent packages
    except (ImportError, ValueError):
        return False
    if spec is None or spec.origin is None:
        return False
    root = Path(importlib.util.find_spec(_PACKAGE).origin).resolve().parent
    return Path(spec.origin).resolve().is_relative_to(root)


def _refuse(class_path: Any, where: str) -> UnsafeFileError:
    return UnsafeFileError(f"{where}: refused component {class_path!r}: a run config may only name lsap's own "
                           "classes (class_path 'lsap.…'); pass it in the allow-list to trust it")


def resolve_component(class_path: Any, where: str, allowed: Collection[str] = ()) -> type:
    """The class a ``class_path`` names, if it may be used: one defined in lsap, or one of
    ``allowed`` (exact class paths the user trusts). Anything else raises
    :class:`UnsafeFileError` before any import."""
    if not isinstance(class_path, str) or not class_path:
        raise BadFileError(f"{where}: class_path must be a dotted class name, got {class_path!r}")
    module_name, _, name = class_path.rpartition(".")
    trusted = class_path in allowed
    if not trusted and not (module_name and _lsap_module_file(module_name)):
        raise _refuse(class_path, where)
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise BadFileError(f"{where}: class_path {class_path!r} names no class") from None
    if not isinstance(value, type):
        raise _refuse(class_path, where)
    if not trusted and not (value.__module__ == _PACKAGE or value.__module__.startswith(_PACKAGE + ".")):
        raise _refuse(class_path, where)  # e.g. a third-party class re-exported by an lsap module
    return value


def check_components(value: Any, where: str, allowed: Collection[str] = ()) -> None:
    """Refuse (:class:`UnsafeFileError`) any ``class_path`` inside ``value`` that
    :func:`resolve_component` would not allow; the text is checked before anything is imported."""
    if isinstance(value, Mapping):
        if "class_path" in value:
            resolve_component(value["class_path"], where, allowed)
        for key, item in value.items():
            check_components(item, f"{where}.{key}", allowed)
    elif isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            check_components(item, f"{where}[{k}]", allowed)


def model_section(config: Mapping[str, Any], where: str) -> tuple[str | None, dict[str, Any]]:
    """``(class_path, init_args)`` of a config's ``model`` section (plain data; nothing imported).
    A config without ``class_path`` (a plain settings file) gives ``(None, its fields)``."""
    model = config.get("model")
    if model is None:
        return None, {}
    if not isinstance(model, Mapping):
        raise BadFileError(f"'{where}': 'model' must be a mapping, got {type(model).__name__}")
    if "class_path" in model:
        init_args = model.get("init_args") or {}
        if not isinstance(init_args, Mapping):
            raise BadFileError(f"'{where}': model.init_args must be a mapping, got {type(init_args).__name__}")
        return model["class_path"], dict(init_args)
    return None, dict(model.get("init_args") or model)


def module_from_run_config(path: str | Path, module_class: type, overrides: Mapping[str, Any] | None = None,
                           allowed: Collection[str] = ()) -> Any:
    """Rebuild the module that wrote a run (``path``: its results folder or config file).

    The run's ``model`` must name ``module_class`` or a subclass of it, with lsap's own
    components only (or ``allowed``); its settings are parsed against the class's typed
    ``__init__`` by jsonargparse, as LightningCLI parsed them when it wrote the file, so an
    unknown key or a wrong type is refused by name. ``overrides`` replace settings.
    """
    from jsonargparse import ArgumentParser

    file = config_file(path)
    config = read_run_config(file)
    class_path, init_args = model_section(config, str(file))
    if class_path is None:
        raise BadFileError(f"'{file}' names no model class (model.class_path): it was not written by an lsap run")
    cls = resolve_component(class_path, f"'{file}' model.class_path", allowed)
    if not issubclass(cls, module_class):
        raise BadFileError(f"'{file}' is not an {module_class.__name__} run ({class_path!r})")
    check_components(init_args, f"'{file}' model.init_args", allowed)
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_class_arguments(cls, "model", instantiate=True, fail_untyped=True)
    try:
        parsed = parser.parse_object({"model": {**init_args, **(overrides or {})}})
    except Exception as error:  # jsonargparse reports bad keys and types as ArgumentError / ValueError
        message = " ".join(str(error).split())
        raise BadFileError(f"'{file}': the settings of {cls.__name__} are not valid: {message}") from None
    return parser.instantiate(parsed).model
