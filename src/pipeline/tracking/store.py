"""Resolve where runs go, create the store and experiment once before anything logs, register models.

A new SQLite store is created by MLflow's schema migrations, which are not safe to run from
several processes at once: 8 runs started together on a new store left it half-migrated and
unreadable (docs/reliability.md). `open_store` therefore creates or checks a SQLite store under an
exclusive lock on a file beside it (POSIX `lockf`, which NFS honours too, so nodes sharing
`outputs/` wait for each other); the other processes wait and then open a finished store.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import sqlalchemy
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.errors import DiskFull, TrackingError, first_line
from pipeline.tracking.mlflow_internals import latest_schema_revision, schema_revision

# MLflow announces every schema migration of a new SQLite store at INFO: not news to a user; and it
# logs each database error with a traceback before raising it as an MlflowException, which the
# pipeline reports in one line (a full disk, a busy file).
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
logging.getLogger("alembic").setLevel(logging.WARNING)


def resolve_tracking_uri(uri: str | None, output_root: Path) -> str:
    """Absolute store URI: Hydra job folders and DDP workers must all reach the same store."""
    if uri is None:
        return f"sqlite:///{(output_root / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def store_full(err: MlflowException, uri: str) -> DiskFull | None:
    """The one-line form of a SQLite store that found its disk full; None for any other error."""
    if "database or disk is full" not in str(err):
        return None
    return DiskFull(
        f"no space left on the device of the store {uri.removeprefix('sqlite:///')}: "
        "free some, then resume=<run id> continues from the last checkpoint"
    )


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_server(uri: str) -> None:
    """A tracking server that does not answer is one line now, not minutes of MLflow's retries."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10):
            return
    except urllib.error.HTTPError:
        return  # it answered (an authenticating proxy, say): MLflow's own calls will tell more
    except OSError as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(
            f"tracking.uri={uri}: no MLflow server answers ({reason}); start one with scripts/server.sh start"
        ) from None


_opened: set[str] = set()  # stores this process has created or checked


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)  # waits for the process creating the store
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


def _holds_no_runs(engine: sqlalchemy.Engine) -> bool:
    """True when the store has no run and no experiment but MLflow's Default: recreating it loses nothing."""
    tables = set(sqlalchemy.inspect(engine).get_table_names())
    with engine.connect() as connection:
        runs = connection.exec_driver_sql("select count(*) from runs").scalar() if "runs" in tables else 0
        experiments = (
            connection.exec_driver_sql("select count(*) from experiments where experiment_id != 0").scalar()
            if "experiments" in tables
            else 0
        )
    return not runs and not experiments


def _repair_interrupted_migration(uri: str, db_path: Path) -> None:
    """A store whose schema migration was interrupted (a crash, or a race of an older version of this code).

    An empty one is created anew; one with runs is repaired when the interruption left only
    alembic's scratch tables behind, and reported in one line with the fix otherwise.
    """
    engine = sqlalchemy.create_engine(uri)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
        scratch = sorted(table for table in tables if table.startswith("_alembic_tmp_"))
        version = schema_revision(engine) if "alembic_version" in tables else None
        if not scratch and version == latest_schema_revision():
            return
        if _holds_no_runs(engine):
            engine.dispose()
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
            logging.getLogger("pipeline").warning(
                "%s: an interrupted store creation left it unusable; created anew", db_path
            )
            return
        if version == latest_schema_revision() and all(
            table.removeprefix("_alembic_tmp_") in tables for table in scratch
        ):
            with engine.begin() as connection:  # the migration finished; its scratch copies are left over
                for table in scratch:
                    connection.exec_driver_sql(f'drop table "{table}"')
            return
        raise TrackingError(
            f"tracking.uri={uri}: the store's schema migration was interrupted (version {version}, "
            f"scratch tables {', '.join(scratch) or 'none'}); back up {db_path}, then run `mlflow db upgrade {uri}`"
        )
    finally:
        engine.dispose()


RESERVE_BYTES = 1 << 20  # kept free beside a SQLite store: room to mark a run FAILED when its disk fills up


def _reserve(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".reserve")


def _keep_reserve(db_path: Path) -> None:
    """Hold RESERVE_BYTES of real blocks (zeros, not a sparse file) beside the store, where there is room."""
    reserve = _reserve(db_path)
    if reserve.is_file() and reserve.stat().st_size == RESERVE_BYTES:
        return
    try:
        reserve.write_bytes(b"\0" * RESERVE_BYTES)
    except OSError:
        reserve.unlink(missing_ok=True)  # no room now: the next open tries again


def release_reserve(uri: str) -> None:
    """The disk of the store is full: free the reserve so that the run's end (FAILED, its reason) can be written."""
    if uri.startswith("sqlite:///"):
        _reserve(Path(uri.removeprefix("sqlite:///"))).unlink(missing_ok=True)


def open_store(uri: str, must_exist: bool = False) -> None:
    """Create a new SQLite store, or check an existing one, once per process and never two processes at once.

    With ``must_exist`` (reading a stored run), a store that is not there is an error, not created.
    """
    if not uri.startswith("sqlite:///") or uri in _opened:
        return
    db_path = Path(uri.removeprefix("sqlite:///"))
    if must_exist and not (db_path.is_file() and db_path.stat().st_size > 0):
        raise TrackingError(
            f"tracking.uri={uri}: no store there; name the store holding the run with tracking.uri= or paths.output_root="
        )
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(db_path.with_name(db_path.name + ".lock")):
        if db_path.exists() and db_path.stat().st_size > 0:
            _repair_interrupted_migration(uri, db_path)
        client = MlflowClient(tracking_uri=uri)
        try:
            client.search_experiments(max_results=1)  # creates and migrates the tracking tables
            client.search_registered_models(max_results=1)  # and the model registry's
        except MlflowException as err:
            raise TrackingError(f"tracking.uri={uri}: {first_line(str(err))}") from None
        _keep_reserve(db_path)
    _opened.add(uri)


def ensure_experiment(uri: str, name: str, output_root: Path) -> str:
    """Experiment id for ``name``, created if missing (with artifacts beside a local store)."""
    if is_server_uri(uri):
        check_server(uri)
    open_store(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None if is_server_uri(uri) else (output_root / "artifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)  # another process created it a moment ago
        if experiment is None:
            raise
        return experiment.experiment_id


def register_model(model_uri: str, name: str, tags: dict[str, str]) -> Any:
    """A new version of registered model ``name`` (in the current tracking URI); returns the version."""
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints two lines per version
        return mlflow.register_model(model_uri, name, tags=tags)
