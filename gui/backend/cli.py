"""The `genesis` command: serve, generate, jobs, export, models."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .config import COMMAND_NAME, DEFAULT_DATA_DIR, DEFAULT_MODELS_DIR, DEFAULT_PORT, Settings, env_name

if TYPE_CHECKING:
    from .store import Job, JobStore


def add_location_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir",
        type=Path,
        help=f"models folder (default: ${env_name('models_dir')} or {DEFAULT_MODELS_DIR})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"jobs and outputs (default: ${env_name('data_dir')} or {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--device", help="torch device for the engines (default: the best available)")


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    add_location_flags(parser)
    parser.add_argument(
        "--host", help="address to bind (default 127.0.0.1; any other address requires a token)"
    )
    parser.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument(
        "--token",
        help="access token clients must send (default: $GENESIS_TOKEN; generated "
        "when binding beyond this machine)",
    )
    parser.add_argument("--max-upload-mb", type=float, help="largest accepted upload in MiB (default 64)")
    parser.add_argument(
        "--max-pixels",
        dest="max_image_pixels",
        type=int,
        help="largest accepted image in pixels (default 40,000,000)",
    )
    parser.add_argument(
        "--idle-unload-s", type=float, help="unload models after this many idle seconds (default 600)"
    )
    parser.add_argument("--allow-origin", action="append", default=[], help="extra CORS origin (repeatable)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the flags that were given; the environment and the defaults fill in the rest."""
    flags = {
        name: getattr(args, name, None)
        for name in (
            "models_dir",
            "data_dir",
            "device",
            "host",
            "port",
            "token",
            "max_image_pixels",
            "idle_unload_s",
        )
    }
    if getattr(args, "max_upload_mb", None):
        flags["max_upload_bytes"] = int(args.max_upload_mb * 2**20)
    flags["extra_origins"] = list(getattr(args, "allow_origin", None) or []) or None
    return Settings(**flags)


# -- serve ---------------------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(settings_from(args), log_level=args.log_level)
    return 0


# -- generate ------------------------------------------------------------------------------------------------
# Environment that keeps libraries' own progress bars and warnings out of the CLI's output.
QUIET_LIBRARIES = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def progress_bar(
    fraction: float, stage: str, eta: float | None, width: int = 30, first_run: bool = False
) -> str:
    """One terminal line: the bar, the stage in the app's words and the time left."""
    from .vocabulary import stage_name

    filled = int(round(fraction * width))
    eta_text = (
        f" about {eta:.0f} s left" + (" (first-run estimate)" if first_run else "") if eta is not None else ""
    )
    words = stage_name(stage)[:40]
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% {words:<40}{eta_text}\033[K"


def default_engine(engines: dict, image_count: int) -> str:
    """Several images: multi-view; one: TRELLIS.2 when its models are present, else the built-in Fresnel."""
    if image_count > 1:
        return "multiview"
    return "trellis2" if engines["trellis2"].status().ready else "fresnel"


def cmd_generate(args: argparse.Namespace) -> int:
    """Queue a job in the data folder's store and run it here, through the server's worker code."""
    from .engines import default_engines
    from .errors import ApiError
    from .files import JobFolders
    from .images import decode_upload, store_inputs
    from .routes import has_gpu, parse_params
    from .store import JobStore

    for name, value in QUIET_LIBRARIES.items():  # our progress line only: no bars or chatter from libraries
        os.environ.setdefault(name, value)
    settings = settings_from(args)
    engines = default_engines(settings.models_dir, settings.device)
    engine = args.engine or ("fresnel" if args.fresnel_model else default_engine(engines, len(args.images)))
    overrides = json.loads(args.params) if args.params else {}
    for key in (
        "seed",
        "pipeline_type",
        "texture_size",
        "decimation_target",
        "mode",
        "fresnel_model",
        *ASSET_FLAGS,
    ):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    overrides.setdefault("name", Path(args.images[0]).stem)  # the asset is named after the (first) image
    if args.steps is not None:
        for stage in (
            "sparse_structure_sampler_params",
            "shape_slat_sampler_params",
            "tex_slat_sampler_params",
        ):
            overrides.setdefault(stage, {})["steps"] = args.steps
    if args.no_remesh:
        overrides["remesh"] = False
    status = engines[engine].status()
    if not status.ready:
        print(f"error: the {engine} engine is not ready: {status.reason}", file=sys.stderr)
        return 3
    try:
        params = parse_params(engine, json.dumps(overrides), has_gpu(settings.device))  # lighter on a CPU
        images = [decode_upload(Path(p).read_bytes(), p, settings.max_image_pixels) for p in args.images]
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store, folders = JobStore(settings.data_dir), JobFolders(settings.data_dir)
    import uuid

    job_id = uuid.uuid4().hex
    names = store_inputs(folders, job_id, images)
    job = store.create(engine, params.model_dump(), names, job_id=job_id)
    return run_here(job, store, folders, engines, settings, args.out)


def run_here(job, store, folders, engines: dict, settings: Settings, out: str | None) -> int:
    """Run the queued `job` in this process through the server's worker code, with a progress line; copy the
    GLB to `out`. The exit code: 0 done, 1 failed, 130 interrupted."""
    from .engines import EngineManager
    from .errors import error_hint
    from .files import MODEL_FILE
    from .progress import FIRST_RUN
    from .store import SUCCEEDED
    from .vocabulary import stage_name
    from .worker import JobWorker

    worker = JobWorker(store, folders, EngineManager(engines), device=settings.device)
    print(f"job {job.id} ({job.engine})")
    shown: list[str] = []

    def show(snap) -> None:
        if sys.stdout.isatty():
            first_run = snap.eta_basis == FIRST_RUN
            sys.stdout.write(progress_bar(snap.fraction, snap.stage, snap.eta_s, first_run=first_run))
        elif stage_name(snap.stage) not in shown[-1:]:  # a log or a pipe: one line per stage
            shown.append(stage_name(snap.stage))
            sys.stdout.write(f"{snap.fraction * 100:3.0f}% {shown[-1]}\n")
        sys.stdout.flush()

    try:
        job = worker.run_job(job, on_progress=show)
    except KeyboardInterrupt:
        print("\ninterrupted")
        return 130
    print()
    if job.state != SUCCEEDED:
        hint = error_hint(job.error_code or "")
        print(
            f"{job.state}: {job.error_message or ''}" + (f"\nWhat to do: {hint}" if hint else ""),
            file=sys.stderr,
        )
        return 1
    model = folders.path(job.id, MODEL_FILE)
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, out)
        model = out
    print(f"model: {model}  ({job.stats.get('faces', '?')} faces)")
    return 0


# -- jobs / export -------------------------------------------------------------------------------------------
def cmd_jobs(args: argparse.Namespace) -> int:
    from .store import JobStore

    store = JobStore(settings_from(args).data_dir)
    jobs = store.list(limit=args.limit)
    if args.json:
        print(json.dumps([j.to_api() for j in jobs], indent=2))
        return 0
    if not jobs:
        print("no jobs yet")
    for job in jobs:
        import time

        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
        extra = job.error_message or ", ".join(job.files)
        print(f"{job.id}  {when}  {job.engine:<9} {job.state:<9} {extra[:60]}")
    return 0


def find_job(store: JobStore, given: str) -> tuple[Job | None, list[str]]:
    """The job `given` names (its full id, or a start of one that fits no other job) and the ids it fits."""
    key = given.strip().lower()
    fits = [job_id for job_id in store.ids() if key and job_id.startswith(key)]
    return (store.get(fits[0]) if len(fits) == 1 else None), fits


def stage_lines(prefix: str = ""):
    """A progress callback `(stage, step, total)` printing as `genesis generate` does: on a terminal one bar that
    moves, in a log or a pipe one line per stage; stages in the app's words (`vocabulary.stage_name`), each
    prefixed with `prefix` (`export:` → "Exporting: baking textures")."""
    from .vocabulary import stage_name

    shown: list[str] = []

    def show(stage: str, step: int, total: int) -> None:
        fraction = step / total if total else 0.0
        if sys.stdout.isatty():
            sys.stdout.write(progress_bar(fraction, prefix + stage, None))
        elif stage_name(prefix + stage) not in shown[-1:]:
            shown.append(stage_name(prefix + stage))
            sys.stdout.write(f"{fraction * 100:3.0f}% {shown[-1]}\n")
        sys.stdout.flush()

    return show


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_file_name, export_generation
    from .files import JobFolders
    from .generation import GENERATION_FILE, load_generation
    from .params import ExportRequest
    from .store import SUCCEEDED, JobStore

    settings = settings_from(args)
    store, folders = JobStore(settings.data_dir), JobFolders(settings.data_dir)
    job, fits = find_job(store, args.job_id)
    if job is None and len(fits) > 1:
        shown = [*fits[:10], "…"] if len(fits) > 10 else fits
        print(f"error: {len(fits)} jobs start with {args.job_id!r}; give more of the id:", file=sys.stderr)
        print("\n".join(f"  {job_id}" for job_id in shown), file=sys.stderr)
        return 2
    if job is None:
        print(
            f"error: no job {args.job_id!r} in {settings.data_dir} (`genesis jobs` lists them)",
            file=sys.stderr,
        )
        return 2
    if job.state != SUCCEEDED:
        print(f"error: the job is {job.state}; only finished jobs can be exported", file=sys.stderr)
        return 2
    chosen = {key: getattr(args, key) for key in (*ASSET_FLAGS, "up_axis") if getattr(args, key) is not None}
    req = ExportRequest(
        format=args.format,
        decimation_target=args.decimation_target,
        texture_size=args.texture_size,
        remesh=not args.no_remesh,
        **{"name": job.params.get("name"), **chosen},  # the job's asset name unless --name says otherwise
    )
    name = export_file_name(req.format, req)
    print(f"job {job.id} ({job.engine}) as {req.format.upper()}")
    meshes = load_generation(folders.path(job.id, GENERATION_FILE), device=settings.device or "cpu")
    with folders.atomic(job.id, name) as tmp:
        export_generation(meshes, req.export_params(), req.format, tmp, stage_lines("export:"))
    if sys.stdout.isatty():
        print()
    store.add_file(job.id, name, name)
    target = folders.path(job.id, name)
    if args.out:
        shutil.copyfile(target, args.out)
        target = Path(args.out)
    print(target)
    return 0


# -- models --------------------------------------------------------------------------------------------------
def cmd_refine(args: argparse.Namespace) -> int:
    """TRELLIS.2 on a finished Fast job's input, from the draft's structure and seed, run here."""
    from .engines import default_engines
    from .errors import ApiError
    from .files import JobFolders
    from .refine import REFINE_ENGINE, check_draft, create_refine_job, refine_params
    from .routes import has_gpu, parse_params
    from .store import JobStore

    settings = settings_from(args)
    store, folders = JobStore(settings.data_dir), JobFolders(settings.data_dir)
    draft, fits = find_job(store, args.job_id)
    if draft is None:
        print(
            f"error: {len(fits) or 'no'} job(s) start with {args.job_id!r} (`genesis jobs` lists them)",
            file=sys.stderr,
        )
        return 2
    engines = default_engines(settings.models_dir, settings.device)
    status = engines[REFINE_ENGINE].status()
    if not status.ready:
        print(f"error: the {REFINE_ENGINE} engine is not ready: {status.reason}", file=sys.stderr)
        return 3
    overrides = json.loads(args.params) if args.params else {}
    if args.pipeline_type:
        overrides["pipeline_type"] = args.pipeline_type
    try:
        check_draft(folders, draft)
        params = parse_params(
            REFINE_ENGINE, json.dumps(refine_params(draft, overrides)), has_gpu(settings.device)
        )
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    job = create_refine_job(store, folders, draft, params.model_dump())
    return run_here(job, store, folders, engines, settings, args.out)


def cmd_models(args: argparse.Namespace) -> int:
    """`genesis models [status|download|token|use]`: the same as the app's Models panel."""
    from . import models_download as md
    from .hf_token import BadToken, TokenStore

    settings = settings_from(args)
    if args.action == "download":
        only = (args.repos or []) + (args.only or [])
        return md.download_all(
            settings.models_dir,
            token=args.hf_token,
            assume_yes=args.yes,
            only=only or None,
            data_dir=settings.data_dir,
        )
    if args.action == "token":
        tokens = TokenStore(settings.data_dir)
        if args.clear:
            tokens.clear()
        else:
            import getpass

            interactive = sys.stdin.isatty()
            given = (
                getpass.getpass("Hugging Face token (input hidden): ")
                if interactive
                else sys.stdin.readline()
            )
            try:
                where = tokens.set(given)
            except BadToken as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"token stored in the {'OS keyring' if where == 'keyring' else 'data folder (mode 0600)'}")
        status = tokens.status()
        print(f"token: {'set (' + str(status['source']) + ')' if status['set'] else 'not set'}")
        return 0
    if args.action == "use":
        choice = args.repos[0] if args.repos else None
        try:
            md.choose_background(settings.models_dir, choice)
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 2
        print(f"background removal: {md.background_model(settings.models_dir) or 'none installed'} in use")
        return 0
    return md.print_status(settings.models_dir)


# -- fresnel -------------------------------------------------------------------------------------------------
def cmd_fresnel_distill(args: argparse.Namespace) -> int:
    """`genesis fresnel distill`: a Fresnel model from TRELLIS.2 (`fresnel.distill.run.distill`)."""
    from fresnel.checkpoint import CARD_FILE
    from fresnel.distill.run import distill
    from fresnel.distill.settings import DistillSettings
    from fresnel.distill.teacher_data import TeacherError

    settings = settings_from(args)
    tty, shown = sys.stdout.isatty(), []

    def show(progress) -> None:  # the teacher data's bar; in a log, a line when an input is finished
        if tty:
            sys.stdout.write("\r" + progress.line() + "\033[K")
        elif (progress.done, progress.failed) not in shown[-1:]:
            shown.append((progress.done, progress.failed))
            sys.stdout.write(progress.line() + "\n")
        sys.stdout.flush()

    def log(line: str) -> None:
        print(("\r\033[K" if tty else "") + line, flush=True)

    chosen = {key: getattr(args, key) for key in FRESNEL_DISTILL_FLAGS if getattr(args, key) is not None}
    try:
        result = distill(
            args.images,
            args.out,
            settings.models_dir,
            settings.data_dir,
            DistillSettings(**chosen, device=settings.device),
            resume=args.resume,
            progress=show,
            log=log,
        )
    except (TeacherError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model: {result.folder} (card: {result.folder / CARD_FILE})")
    return 0


FRESNEL_DISTILL_FLAGS = ("pipeline_type", "seeds_per_image", "steps", "batch_size", "lr", "base")


def add_fresnel_commands(sub) -> None:
    """`genesis fresnel distill`; its defaults are those of `fresnel.distill.settings.DistillSettings`."""
    from fresnel.distill.settings import DistillSettings

    from . import vocabulary

    defaults = DistillSettings()
    p = sub.add_parser("fresnel", help="Fresnel models: distil one from TRELLIS.2")
    commands = p.add_subparsers(dest="fresnel_command", required=True)
    d = commands.add_parser(
        "distill",
        help="teacher data from TRELLIS.2 on a folder of images, a student trained on it, its card; the result "
        "is <models>/fresnel/NAME, chosen with --fresnel-model NAME or the Fast tab's Model menu",
    )
    add_location_flags(d)
    d.add_argument(
        "--images", type=Path, required=True, help="images; each sub-folder: the views of one object"
    )
    d.add_argument("--out", required=True, metavar="NAME", help="the new model's name")
    d.add_argument(
        "--pipeline-type", choices=list(vocabulary.pipeline_types()), help=f"default {defaults.pipeline_type}"
    )
    d.add_argument(
        "--seeds-per-image", type=int, help=f"teacher runs per image (default {defaults.seeds_per_image})"
    )
    d.add_argument("--steps", type=int, help=f"training steps in all (default {defaults.steps})")
    d.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    d.add_argument("--lr", type=float, help=f"learning rate (default {defaults.lr})")
    d.add_argument("--base", type=Path, help="the checkpoint the student starts from (default: the built-in)")
    d.add_argument(
        "--resume", action="store_true", help="go on with the run of the same name where it stopped"
    )
    d.set_defaults(func=cmd_fresnel_distill)


def default_of(model, name: str):
    return model.model_fields[name].get_default(call_default_factory=True)


ASSET_FLAGS = ("alpha_mode", "alpha_cutoff", "name")  # export settings `generate` takes too (it writes a GLB)
FLAG_TYPES = {"integer": int, "number": float, "string": str}


def add_field_flags(parser: argparse.ArgumentParser, model, names: tuple[str, ...], **defaults: str) -> None:
    """`--<name>` for each field `names` of `model`, typed and explained as `describe_fields` describes it;
    unset flags stay None so the model's own default applies (`defaults` overrides the help's default)."""
    from .params import describe_fields

    fields = describe_fields(model)
    for name in names:
        field = fields[name]
        notes = [field["description"]] if field.get("description") else []
        if "minimum" in field:
            notes.append(f"{field['minimum']}-{field['maximum']}")
        default = defaults.get(name, field["default"])
        if default is not None:
            notes.append(f"default: {default}")
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=FLAG_TYPES[field["type"]],
            metavar="{" + ",".join(map(str, field["choices"])) + "}" if "choices" in field else None,
            help=field["label"] + (f" ({'; '.join(notes)})" if notes else ""),
        )


def build_parser() -> argparse.ArgumentParser:
    """The command line; every choice and default comes from the engine registry, the vocabulary's owners
    and the parameter models, read when the parser is built."""
    from . import vocabulary
    from .engines import ENGINES
    from .params import ExportRequest, SamplerParams, describe_fields

    steps = describe_fields(SamplerParams)["steps"]
    steps_range = f"{steps['minimum']}-{steps['maximum']}"
    parser = argparse.ArgumentParser(prog=COMMAND_NAME, description="Genesis: images to textured 3D assets.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the local job server")
    add_server_flags(p)
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("generate", help="turn image(s) into a 3D model here, with a progress bar")
    add_location_flags(p)
    takes = "; ".join(
        f"{e.name}: {e.min_images}" + (f"-{e.max_images}" if e.max_images > e.min_images else "")
        for e in ENGINES.values()
    )
    p.add_argument("images", nargs="+", help=f"the image(s) ({takes})")
    p.add_argument(
        "--engine",
        choices=list(ENGINES),
        help="default: multiview for several images; for one, trellis2 when its models are present, else fresnel",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--pipeline-type", choices=list(vocabulary.pipeline_types()))
    p.add_argument("--steps", type=int, help=f"sampling steps for every stage ({steps_range})")
    p.add_argument("--texture-size", type=int, choices=list(vocabulary.texture_sizes()))
    p.add_argument("--decimation-target", type=int)
    p.add_argument("--no-remesh", action="store_true")
    p.add_argument("--mode", choices=list(vocabulary.multiview_modes()), help="multi-view mode")
    p.add_argument(
        "--fresnel-model",
        metavar="NAME",
        help="the Fast engine's model (implies --engine fresnel; default: the built-in; see genesis fresnel distill)",
    )
    add_field_flags(p, ExportRequest, ASSET_FLAGS, name="the image's file name")
    p.add_argument("--params", help="JSON with any API parameters")
    p.add_argument("--out", help="copy the GLB here")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("jobs", help="list jobs in the data folder")
    add_location_flags(p)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("export", help="export a finished job again with other settings (no re-sampling)")
    add_location_flags(p)
    p.add_argument("job_id", help="the job's id, or enough of its start to tell it apart (`genesis jobs`)")
    p.add_argument(
        "--format",
        choices=list(vocabulary.export_format_names()),
        default=default_of(ExportRequest, "format"),
    )
    p.add_argument("--decimation-target", type=int, default=default_of(ExportRequest, "decimation_target"))
    p.add_argument(
        "--texture-size",
        type=int,
        choices=list(vocabulary.texture_sizes()),
        default=default_of(ExportRequest, "texture_size"),
    )
    p.add_argument("--no-remesh", action="store_true")
    add_field_flags(p, ExportRequest, (*ASSET_FLAGS, "up_axis"), name="the job's name")
    p.add_argument("--out", help="copy the file here")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("refine", help="TRELLIS.2 from a finished Fast draft: the draft's structure and seed")
    add_location_flags(p)
    p.add_argument(
        "job_id", help="the Fast job's id, or enough of its start to tell it apart (`genesis jobs`)"
    )
    p.add_argument("--pipeline-type", choices=list(vocabulary.pipeline_types()))
    p.add_argument("--params", help="JSON with any TRELLIS.2 parameters")
    p.add_argument("--out", help="copy the GLB here")
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser(
        "models",
        help="show the models (state, size, licence), download them, store the Hugging Face token, choose "
        "the background-removal model",
    )
    add_location_flags(p)
    p.add_argument("action", nargs="?", choices=["status", "download", "token", "use"], default="status")
    p.add_argument(
        "repos",
        nargs="*",
        help="download: only these model ids (e.g. microsoft/TRELLIS.2-4B); use: the background-removal model "
        "(e.g. ZhengPeng7/BiRefNet; none given forgets the choice)",
    )
    p.add_argument(
        "--hf-token",
        help="Hugging Face token for gated models (default: the stored one, HF_TOKEN or your login)",
    )
    p.add_argument("--yes", action="store_true", help="do not ask before downloading")
    p.add_argument("--only", action="append", help="download only this model id (repeatable)")
    p.add_argument("--clear", action="store_true", help="token: forget the stored token")
    p.set_defaults(func=cmd_models)

    add_fresnel_commands(sub)

    from .backup import add_backup_commands

    add_backup_commands(sub, add_location_flags)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
