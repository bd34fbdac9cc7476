"""The model repository: versioned process models in the workspace's ``process_models/``.

Every save is a new version, so a model that a report or a conformance run used
is never overwritten::

    process_models/
      loans/
        .lock            savers of "loans" take it to pick the next version
        v1/              model.bpmn (always), model.pnml, model.ptml, meta.json
        v2/

``model.bpmn`` is BPMN 2.0 with a diagram (:func:`procestra.bpmn.write_bpmn`), for
modelers and engines; ``model.pnml`` keeps the exact Petri net conformance checking
replays and ``model.ptml`` the process tree, when the model has them. ``meta.json``
says where the model came from (log, filter, miner and parameters), its quality
scores and activities.

A version directory is written under a temporary name and renamed into place, so
readers never see half a model; the next version number is chosen under an
inter-process lock, so two processes saving at once get distinct versions.

>>> info = save_model(ws, "loans", discover(ws, "loans"))
>>> info.ref
'loans@1'
>>> model = load_model(ws, "loans")          # latest version; or "loans@1"
>>> net, im, fm = model.petri
>>> load_model(ws, "../shared/event_logs/models/receipt.bpmn")   # any file
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from procestra.errors import InvalidArgumentError, ModelError, ModelNotFoundError, ProcestraError, StoreBusyError
from procestra.models.bpmn import bpmn_to_petri, read_bpmn, write_bpmn, write_pnml, write_ptml
from procestra.models.render import AcceptingPetriNet
from procestra.names import check_name, is_name, shown
from procestra.version import __version__

if TYPE_CHECKING:
    from procestra.store.home import Home

__all__ = [
    "MODEL_FILE_TYPES",
    "LoadedModel",
    "ModelInfo",
    "ModelParts",
    "ModelRef",
    "is_model_path",
    "list_models",
    "load_model",
    "model_info",
    "model_parts",
    "petri_of",
    "save_model",
    "validate_model_name",
    "write_version",
]

#: File extensions :func:`load_model` reads as model files (rather than saved model names).
MODEL_FILE_TYPES = (".bpmn", ".pnml", ".ptml")

_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")
_META = "meta.json"


def validate_model_name(name: Any, *, parameter: str = "name") -> str:
    """Check a model name: the one name rule (:mod:`procestra.names`), and not ending in a model file's type."""
    check_name(name, kind="model", parameter=parameter)
    if name.lower().endswith(MODEL_FILE_TYPES):
        raise InvalidArgumentError(f"invalid model name {shown(name)}: it ends like a file ({name.rsplit('.', 1)[-1]})"
                                   "; give the model's name, not the file's", parameter=parameter)
    return str(name)


# -- value types --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """A saved model, and one version of it or (``version`` None) its latest: ``"loans"``, ``"loans@2"``.

    >>> ModelRef.parse("loans@2")
    ModelRef(name='loans', version=2)
    >>> str(ModelRef("loans", 2))
    'loans@2'
    """

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, ref: str | ModelRef, version: int | None = None) -> ModelRef:
        """``"name@3"`` -> ``ModelRef("name", 3)``; ``version`` gives the version of a bare name, and must
        agree with one in ``ref``. The name itself is not checked (:func:`validate_model_name` does that)."""
        text = str(ref) if isinstance(ref, ModelRef) else ref
        name, at, tail = text.rpartition("@")
        if not at:
            return cls(text, version)
        if not tail.isdigit() or int(tail) < 1:
            raise InvalidArgumentError(f"invalid model reference {text!r}: the version after '@' must be a "
                                       "positive number, e.g. 'loans@2'", parameter="name")
        if version is not None and int(version) != int(tail):
            raise InvalidArgumentError(f"{text!r} names version {tail} but version={version} was given",
                                       parameter="version")
        return cls(name, int(tail))

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


@dataclass(frozen=True)
class ModelInfo:
    """One saved version of a model, as ``meta.json`` describes it."""

    name: str
    version: int
    #: When the version was saved (UTC).
    created: datetime
    #: The version's directory, ``process_models/<name>/v<version>``.
    path: Path
    #: What was saved: "process tree", "Petri net" or "BPMN".
    kind: str
    source_log: str | None = None
    #: The filter in words (``Filter.describe()``), or None for the whole log.
    filter: str | None = None
    miner: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: Quality scores (fitness, precision, ...), as given when saving.
    quality: dict[str, Any] = field(default_factory=dict)
    #: The model's activities (visible transition labels), sorted.
    activities: tuple[str, ...] = ()
    #: The files in the version directory, ``meta.json`` excluded.
    files: tuple[str, ...] = ()
    #: How many versions the model has (the count for :func:`list_models`).
    versions: int = 1

    @property
    def ref(self) -> str:
        """``name@version``: what :func:`load_model` and ``conform`` accept."""
        return str(ModelRef(self.name, self.version))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created"] = self.created.isoformat()
        d["path"] = str(self.path)
        d["activities"] = list(self.activities)
        d["files"] = list(self.files)
        return d

    def _repr_html_(self) -> str:
        rows = []
        for key, value in self.to_dict().items():
            if key == "activities":
                value = f"{len(self.activities)}: " + ", ".join(self.activities)
            elif isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
            rows.append(f"<tr><th style='text-align:left'>{key}</th><td>{html.escape(str(value))}</td></tr>")
        return f"<table><caption>model <b>{html.escape(self.ref)}</b></caption>{''.join(rows)}</table>"

    @classmethod
    def _from_meta(cls, meta: Mapping[str, Any], path: Path, versions: int) -> ModelInfo:
        return cls(
            name=str(meta["name"]), version=int(meta["version"]), created=datetime.fromisoformat(meta["created"]),
            path=path, kind=str(meta.get("kind") or "BPMN"), source_log=meta.get("source_log"),
            filter=meta.get("filter"), miner=meta.get("miner"), params=dict(meta.get("params") or {}),
            quality=dict(meta.get("quality") or {}), activities=tuple(meta.get("activities") or ()),
            files=tuple(meta.get("files") or ()), versions=versions,
        )


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for conformance and display: BPMN, accepting Petri net, tree if any."""

    bpmn: Any
    net: Any
    initial_marking: Any
    final_marking: Any
    tree: Any = None
    #: The saved version it came from, or None for a file read from anywhere.
    info: ModelInfo | None = None
    #: The file (or the version directory) it was read from.
    path: Path | None = None

    @property
    def ref(self) -> str:
        """``name@version`` for a saved model, else the file's path."""
        if self.info is not None:
            return self.info.ref
        return str(self.path) if self.path is not None else "(in memory)"

    @property
    def petri(self) -> tuple[Any, Any, Any]:
        """``(net, initial_marking, final_marking)``, as pm4py's functions take it."""
        return self.net, self.initial_marking, self.final_marking

    @property
    def activities(self) -> tuple[str, ...]:
        """The visible transition labels of the net, sorted."""
        return _activities(self.net, self.bpmn)

    def __repr__(self) -> str:
        return f"<LoadedModel {self.ref}: {len(self.activities)} activities>"

    def _repr_html_(self) -> str:
        head = f"<p>model <b>{html.escape(self.ref)}</b>, {len(self.activities)} activities</p>"
        try:
            from procestra.models.render import as_svg

            return head + as_svg(self.bpmn if self.bpmn is not None else self.petri)
        except (ImportError, ProcestraError):
            return head


# -- model kinds ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelParts:
    """One model in every form we can give it (None where a conversion does not exist)."""

    kind: str
    tree: Any
    petri: tuple[Any, Any, Any] | None
    bpmn: Any
    source_log: str | None = None
    filter: str | None = None
    miner: str | None = None
    params: dict[str, Any] | None = None


def _is_discovery(model: Any) -> bool:
    return all(hasattr(model, a) for a in ("tree", "net", "bpmn"))


def _petri_from(kind: str, model: Any) -> tuple[Any, Any, Any]:
    import pm4py

    try:
        net, im, fm = pm4py.convert_to_petri_net(model)
    except Exception as exc:  # pm4py raises bare exceptions on models it cannot convert
        raise ModelError(f"cannot convert the {kind} to a Petri net: {type(exc).__name__}: {exc}") from exc
    return net, im, fm


def _bpmn_from(kind: str, *model: Any) -> Any:
    import pm4py

    try:
        return pm4py.convert_to_bpmn(*model)
    except Exception as exc:
        raise ModelError(f"cannot convert the {kind} to BPMN: {type(exc).__name__}: {exc}") from exc


def model_parts(model: Any) -> ModelParts:
    """What ``model`` is, and its tree, Petri net and BPMN forms."""
    from pm4py.objects.bpmn.obj import BPMN
    from pm4py.objects.petri_net.obj import PetriNet
    from pm4py.objects.process_tree.obj import ProcessTree

    if isinstance(model, LoadedModel):
        kind = model.info.kind if model.info is not None else "process tree" if model.tree is not None else "BPMN"
        bpmn = model.bpmn if model.bpmn is not None else _bpmn_from("Petri net", *model.petri)
        if model.info is None:
            return ModelParts(kind, model.tree, model.petri, bpmn)
        origin = model.info
        return ModelParts(kind, model.tree, model.petri, bpmn, source_log=origin.source_log, filter=origin.filter,
                      miner=origin.miner, params=dict(origin.params))
    if _is_discovery(model):
        miner = getattr(model, "miner", None)
        if model.tree is not None:
            inner = model_parts(model.tree)
        elif model.net is not None:
            inner = model_parts((model.net, model.initial_marking, model.final_marking))
        elif model.bpmn is not None:
            inner = model_parts(model.bpmn)
        elif callable(getattr(model, "to_petri", None)):  # heuristics nets, DFGs
            try:
                inner = model_parts(tuple(model.to_petri()))
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"the {miner} result has no model to save: {exc}") from exc
        else:
            raise InvalidArgumentError("the discovery result holds no model", parameter="model")
        return ModelParts(inner.kind, inner.tree, inner.petri, inner.bpmn, source_log=getattr(model, "log", None),
                      filter=getattr(model, "filter", None), miner=miner,
                      params=dict(getattr(model, "params", None) or {}))
    if isinstance(model, ProcessTree):
        return ModelParts("process tree", model, _petri_from("process tree", model), _bpmn_from("process tree", model))
    if isinstance(model, AcceptingPetriNet):
        model = (model.net, model.initial_marking, model.final_marking)
    if isinstance(model, tuple) and len(model) == 3 and isinstance(model[0], PetriNet):
        net, im, fm = model
        return ModelParts("Petri net", None, (net, im, fm), _bpmn_from("Petri net", net, im, fm))
    if isinstance(model, BPMN):
        try:
            petri: tuple[Any, Any, Any] | None = bpmn_to_petri(model)
        except ModelError:
            petri = None  # still worth keeping as BPMN
        return ModelParts("BPMN", None, petri, model)
    raise InvalidArgumentError(
        f"cannot use a {type(model).__name__} as a process model: give a process tree, a Petri net "
        "(net, initial_marking, final_marking), a BPMN model or a discovery result", parameter="model")


def petri_of(model: Any) -> tuple[Any, Any, Any]:
    """``(net, im, fm)`` of a tree, Petri net triple, BPMN, :class:`LoadedModel` or discovery result."""
    parts = model_parts(model)
    if parts.petri is None:
        return bpmn_to_petri(parts.bpmn)  # raises the conversion's ModelError
    return parts.petri


def _activities(net: Any, bpmn: Any = None) -> tuple[str, ...]:
    if net is not None:
        return tuple(sorted({str(t.label) for t in net.transitions if t.label is not None}))
    if bpmn is not None:
        from pm4py.objects.bpmn.obj import BPMN

        return tuple(sorted({str(n.get_name()) for n in bpmn.get_nodes()
                             if isinstance(n, BPMN.Task) and n.get_name()}))
    return ()


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (unknown objects as their ``str``)."""
    return json.loads(json.dumps(value, default=str))


def _scores(quality: Any) -> dict[str, Any]:
    if quality is None:
        return {}
    scores = getattr(quality, "scores", None)
    if callable(scores):  # a ConformanceResult
        quality = scores()
    if not isinstance(quality, Mapping):
        raise InvalidArgumentError("quality must be a dict of scores (or a conformance result), "
                                   f"not {type(quality).__name__}", parameter="quality")
    return dict(_jsonable(dict(quality)))


# -- saving --------------------------------------------------------------------------------
def _versions(model_dir: Path) -> list[int]:
    """The complete versions in ``model_dir`` (directories with a meta.json), ascending."""
    if not model_dir.is_dir():
        return []
    found = []
    for entry in model_dir.iterdir():
        m = _VERSION_DIR.match(entry.name)
        if m and (entry / _META).is_file():
            found.append(int(m.group(1)))
    return sorted(found)


def _next_version(model_dir: Path) -> int:
    """One more than any ``v<N>`` directory, complete or not (a crashed rename is never reused)."""
    numbers = [int(m.group(1)) for e in model_dir.iterdir() if (m := _VERSION_DIR.match(e.name))]
    return max(numbers, default=0) + 1


def save_model(
    ws: Home,
    name: str,
    model: Any,
    *,
    source_log: str | None = None,
    filter: Any = None,
    miner: str | None = None,
    params: Mapping[str, Any] | None = None,
    quality: Any = None,
) -> ModelInfo:
    """Save ``model`` as the next version of ``name`` in ``process_models/``.

    ``model`` is a process tree, a Petri net ``(net, im, fm)``, a BPMN model, a
    :class:`LoadedModel` or a discovery result (whose log, filter, miner and parameters
    are recorded unless given here). ``filter`` is a ``Filter`` or its description;
    ``quality`` a dict of scores or a ``ConformanceResult``.

    >>> save_model(ws, "loans", discover(ws, "loans"), quality=conform(ws, "loans", "loans"))
    """
    validate_model_name(name)
    parts = model_parts(model)
    flt = filter if filter is None or isinstance(filter, str) else (
        filter.describe() if callable(getattr(filter, "describe", None)) else str(filter))
    meta: dict[str, Any] = {
        "name": name, "version": None, "created": None, "kind": parts.kind,
        "source_log": source_log if source_log is not None else parts.source_log,
        "filter": flt if flt is not None else parts.filter,
        "miner": miner if miner is not None else parts.miner,
        "params": _jsonable(dict(params if params is not None else parts.params or {})),
        "quality": _scores(quality),
        "activities": list(_activities(parts.petri[0] if parts.petri else None, parts.bpmn)),
        "files": [], "procestra_version": __version__,
    }

    def write(tmp: Path) -> None:  # the expensive part (layout, conversions) runs outside the lock
        write_bpmn(parts.bpmn, tmp / "model.bpmn", name=name)
        if parts.petri is not None:
            write_pnml(*parts.petri, tmp / "model.pnml")
        if parts.tree is not None:
            write_ptml(parts.tree, tmp / "model.ptml")

    return write_version(ws, name, meta, write)


def write_version(ws: Home, name: str, meta: dict[str, Any], write: Callable[[Path], None]) -> ModelInfo:
    """Save a new version of model ``name``: ``write`` fills a temporary directory, then under
    the model's lock it gets the next number and its ``meta.json`` and is renamed into place.

    ``meta`` gets ``files``, ``version`` and ``created`` filled in. Readers see a whole
    version or none of it; a failure leaves no trace.
    """
    model_dir = ws.models_dir / name
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write(tmp)
        meta["files"] = sorted(p.name for p in tmp.iterdir())
        lock = FileLock(str(model_dir / ".lock"))
        try:
            lock.acquire(timeout=ws.store.timeout)
        except Timeout as exc:
            raise StoreBusyError(f"another process kept saving model {name!r} for {ws.store.timeout:.0f}s; "
                                 "try again, or raise PROCESTRA_LOCK_TIMEOUT") from exc
        try:
            version = _next_version(model_dir)
            meta["version"] = version
            meta["created"] = datetime.now(UTC).isoformat()
            with open(tmp / _META, "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=2, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            final = model_dir / f"v{version}"
            os.rename(tmp, final)  # atomic: readers see the whole version or none of it
        finally:
            lock.release()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ModelInfo._from_meta(meta, final, versions=len(_versions(model_dir)))


# -- reading -------------------------------------------------------------------------------
def _read_meta(version_dir: Path, versions: int) -> ModelInfo:
    try:
        meta = json.loads((version_dir / _META).read_text(encoding="utf-8"))
        return ModelInfo._from_meta(meta, version_dir, versions)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the model's meta.json is unreadable: {exc}", path=str(version_dir / _META)) from exc


def _model_names(ws: Home) -> list[str]:
    root = ws.models_dir
    if not root.is_dir():
        return []
    return sorted(e.name for e in root.iterdir()
                  if e.is_dir() and is_name(e.name) and _versions(e))


def list_models(ws: Home) -> list[ModelInfo]:
    """The latest version of every saved model, by name; ``versions`` counts its versions."""
    out = []
    for name in _model_names(ws):
        versions = _versions(ws.models_dir / name)
        out.append(_read_meta(ws.models_dir / name / f"v{versions[-1]}", len(versions)))
    return out


def model_info(ws: Home, name: str | ModelRef, version: int | None = None) -> ModelInfo:
    """What ``meta.json`` says about ``name`` (latest version, or ``version``; ``"name@2"`` works too)."""
    ref = ModelRef.parse(name, version)
    name, version = ref.name, ref.version
    validate_model_name(name)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise InvalidArgumentError(f"version must be a positive integer, not {version!r}", parameter="version")
    versions = _versions(ws.models_dir / name)
    if not versions:
        raise ModelNotFoundError(name, _model_names(ws))
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise ModelNotFoundError(name, version=chosen, versions=versions)
    return _read_meta(ws.models_dir / name / f"v{chosen}", len(versions))


def is_model_path(ref: Any) -> bool:
    if isinstance(ref, os.PathLike):
        return True
    return isinstance(ref, str) and ("/" in ref or os.sep in ref or ref.lower().endswith((*MODEL_FILE_TYPES,
                                                                                          ".bpmn20.xml")))


def _complete_markings(net: Any, im: Any, fm: Any) -> tuple[Any, Any, Any]:
    """PNML files without markings: the source and sink places, as pm4py guesses them."""
    from pm4py.objects.petri_net.utils.final_marking import discover_final_marking
    from pm4py.objects.petri_net.utils.initial_marking import discover_initial_marking

    return net, im if len(im) else discover_initial_marking(net), fm if len(fm) else discover_final_marking(net)


def _read_pnml(path: Path) -> tuple[Any, Any, Any]:
    """pm4py's PNML reader, with markings completed (pm4py warns about missing ones; we guess them)."""
    import pm4py
    from pm4py.objects.petri_net.obj import Marking

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without a specified (initial|final) marking")
        net, im, fm = pm4py.read_pnml(str(path))
    if net is None or not net.places or not net.transitions:
        raise ModelError("the file holds no Petri net (no places or no transitions)", path=str(path))
    return _complete_markings(net, im if im is not None else Marking(), fm if fm is not None else Marking())


def _load_file(path: Path) -> LoadedModel:
    import pm4py

    ext = ".bpmn" if path.name.lower().endswith(".bpmn20.xml") else path.suffix.lower()  # Camunda's name for BPMN
    if ext not in MODEL_FILE_TYPES:
        raise InvalidArgumentError(f"cannot read a model from {path.name!r}: model files end in "
                                   + ", ".join(MODEL_FILE_TYPES), parameter="model")  # fmt: skip
    if not path.is_file():
        raise ModelError("no such file", path=str(path))
    if ext == ".bpmn":
        bpmn = read_bpmn(path)
        return LoadedModel(bpmn, *bpmn_to_petri(bpmn), path=path)
    try:
        if ext == ".pnml":
            net, im, fm = _read_pnml(path)
            tree = None
        else:
            tree = pm4py.read_ptml(str(path))
            net, im, fm = pm4py.convert_to_petri_net(tree)
    except ModelError:
        raise
    except Exception as exc:  # pm4py's importers raise whatever lxml or their parsers raise
        raise ModelError(f"not a readable {ext[1:].upper()} file: {type(exc).__name__}: {exc}",
                         path=str(path)) from exc
    try:
        bpmn = pm4py.convert_to_bpmn(tree) if tree is not None else pm4py.convert_to_bpmn(net, im, fm)
    except Exception:  # noqa: BLE001 - pm4py's converter fails in many ways; conformance needs only the net
        bpmn = None  # e.g. a Petri net that is no workflow net
    return LoadedModel(bpmn, net, im, fm, tree=tree, path=path)


def load_model(ws: Home | None, name_or_path: str | os.PathLike[str], version: int | None = None,
               ) -> LoadedModel:  # fmt: skip
    """A saved model (``"loans"``, ``"loans@2"`` or ``version=2``) or a ``.bpmn``/``.pnml``/``.ptml`` file.

    Saved models come back with the exact Petri net that was saved (``model.pnml``),
    else the net converted from ``model.bpmn``; files from other tools are read with
    :func:`procestra.bpmn.read_bpmn` (clear :class:`ModelError` for broken files).
    Unknown names or versions raise :class:`ModelNotFoundError`.
    """
    import pm4py

    if is_model_path(name_or_path):
        if version is not None:
            raise InvalidArgumentError("version= applies to saved models, not to files", parameter="version")
        return _load_file(Path(name_or_path))
    if ws is None:
        raise InvalidArgumentError(f"{name_or_path!r} is not a file path, and saved models need a workspace",
                                   parameter="ws")
    info = model_info(ws, str(name_or_path), version)
    where = info.path
    try:
        bpmn = read_bpmn(where / "model.bpmn")
        tree = pm4py.read_ptml(str(where / "model.ptml")) if (where / "model.ptml").is_file() else None
        if (where / "model.pnml").is_file():
            net, im, fm = _read_pnml(where / "model.pnml")
        else:
            net, im, fm = bpmn_to_petri(bpmn)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"the saved model files are unreadable: {type(exc).__name__}: {exc}",
                         path=str(where)) from exc
    return LoadedModel(bpmn, net, im, fm, tree=tree, info=info, path=where)
