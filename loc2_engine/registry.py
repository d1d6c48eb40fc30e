"""One loader for the registries' lazy "module:attribute" targets (matcher architectures, depth providers), so
an optional architecture or provider costs nothing until it is used."""

from __future__ import annotations

import importlib


def load_target(target: str, error: type, what: str):
    """The attribute named by ``target`` ("package.module:attribute").

    error: the `Loc2Error` subclass raised, with ``what`` (e.g. "The depth provider 'mono'") in its sentence,
    when the module or attribute is not in this installation. A dependency missing inside an existing module
    is a bug to surface, and propagates.
    """
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise error(f"{what} is not available in this installation.") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise error(f"{what} is not available in this installation ({module_name} has no {attribute}).") from exc
