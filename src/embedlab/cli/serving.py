"""`embedlab serve` and `embedlab keys`: the HTTP service and its API keys."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli.common import BackendOption, app, console, err_console, user_errors
from embedlab.core.errors import EmbedlabError

keys_app = typer.Typer(
    help="API keys for `embedlab serve`: create (shown once), list, revoke; signing keys for "
    "bundles: sign-key create, sign, verify.\n\n"
    "[bold]Examples[/]\n\n"
    "  embedlab keys create support-bot --keys keys.json --model intents --rate 600\n\n"
    "  embedlab keys list --keys keys.json\n\n"
    "  embedlab serve intents/ --keys keys.json   (the model in intents/ is served as intents)",
    rich_markup_mode="rich",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys", rich_help_panel="Serve")

KeysFileOption = Annotated[
    Path, typer.Option("--keys", help="The keys file (JSON; keys are stored as hashes).")
]


def _require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise EmbedlabError(
            f"serving needs the 'serve' extra ({exc.name} is missing): "
            "pip install 'embedlab[serve]'"
        ) from None


def _query_maps(items: list[str] | None) -> dict[str, str]:
    """--query-map INDEX=MAP options as {index name: map directory}."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise EmbedlabError(
                f"--query-map takes INDEX=MAP (a served index's name), got {item!r}"
            )
        out[name] = path
    return out


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@app.command(rich_help_panel="Serve")
def serve(
    models: Annotated[
        list[Path],
        typer.Argument(
            help="Model bundles and table models (from `embedlab fit`), search indexes (from "
            "`embedlab index`) and encoders (students from `embedlab distill`, or "
            "sentence-transformers "
            "directories: /v1/embeddings only); each is served under its directory's name."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless you say).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    keys: Annotated[
        Path | None,
        typer.Option(
            help="Keys file (`embedlab keys create`): every request then needs "
            "a key (Authorization: Bearer KEY)."
        ),
    ] = None,
    max_texts: Annotated[int, typer.Option(help="Texts per request at most (422 above).")] = 256,
    max_chars: Annotated[int, typer.Option(help="Characters per text at most (422 above).")] = (
        10_000
    ),
    max_body_bytes: Annotated[int, typer.Option(help="Request body size limit (413 above).")] = (
        1_000_000
    ),
    batching: Annotated[
        bool,
        typer.Option(
            "--batching/--no-batching", help="Merge concurrent requests into one encoder call."
        ),
    ] = True,
    max_batch_rows: Annotated[int, typer.Option(help="Rows per merged encoder call.")] = 64,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            help="How long a batch waits for more requests (0: an idle encoder starts at "
            "once; requests arriving meanwhile form the next batch)."
        ),
    ] = 0.0,
    max_queue_rows: Annotated[
        int, typer.Option(help="Queued rows before new requests get 429 + Retry-After.")
    ] = 4096,
    max_batch_tokens: Annotated[
        int,
        typer.Option(
            help="Padded tokens per merged encoder call (rows × the longest row, estimated "
            "at 4 characters a token): long texts go in smaller batches."
        ),
    ] = 16_384,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Load a new version written to a served directory (e.g. `embedlab "
            "add-classes ... --force`) and swap it in; a broken one is refused and the old "
            "one keeps serving.",
        ),
    ] = False,
    watch_interval: Annotated[
        float, typer.Option(help="Seconds between two looks at the served directories.")
    ] = 2.0,
    read_only: Annotated[
        bool,
        typer.Option("--read-only", help="Refuse run-time changes (POST /v1/models/NAME/classes)."),
    ] = False,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allow browser calls from this origin (repeat).")
    ] = None,
    require_signature: Annotated[
        Path | None,
        typer.Option(
            "--require-signature",
            help="Serve only bundles signed with this key file (`embedlab keys sign-key "
            "create`; `fit --sign`); changes made through the service are signed with it.",
        ),
    ] = None,
    public_metrics: Annotated[
        bool,
        typer.Option(
            "--public-metrics",
            help="With --keys: let /metrics answer without a key (for a scraper).",
        ),
    ] = False,
    query_map: Annotated[
        list[str] | None,
        typer.Option(
            help="INDEX=MAP (repeat): search the served index INDEX with queries encoded by "
            "the map's new encoder and mapped back (`embedlab align OLD NEW`, OLD = the "
            "index's encoder): move to a new encoder without rebuilding the index.",
        ),
    ] = None,
    backend: BackendOption = None,
) -> None:
    """Serve models and indexes over HTTP: OpenAI-compatible embeddings, classify, detect,
    search, run-time classes, metrics and a playground page.

    Endpoints: POST /v1/embeddings (the official openai client works against it), POST
    /v1/classify and /v1/detect ({"model": NAME, "input": \\[texts]}, or "models": [...] to
    ask several at once with one encoding), POST /v1/search ({"index": NAME, "input":
    \\[texts], "k": 5, "labels": [...]}), POST /v1/models/NAME/classes ({"examples": [{"text",
    "label"}, ...]}: a new version, saved and swapped in), POST /v1/models/NAME/records
    ({"records": [{column: value}, ...]}: a table model's labels), GET /v1/models, /v1/indexes,
    /healthz, /readyz and /metrics (Prometheus, with each model's recent out-of-scope rate
    and novelty quantiles). The playground is at /, the OpenAPI schema at /openapi.json,
    interactive docs at /docs.

    [bold]Examples[/]

      embedlab serve model/ index/ --watch     (then open http://127.0.0.1:8000/)

      embedlab keys create my-app --keys keys.json   (then: embedlab serve model/ --keys keys.json)

      curl -s localhost:8000/v1/classify -H 'content-type: application/json' \\
        -d '{"model": "model", "input": ["wake me at 7"]}'
    """
    with user_errors():
        _require_serve_extra()
        import uvicorn

        from embedlab.serve import ServeConfig, create_app

        if not _is_loopback(host) and keys is None:
            err_console.print(
                f"[yellow]warning:[/] serving on {host} with no --keys: anyone who can reach "
                "this address can call the models"
            )
        if not 1 <= port <= 65535:
            raise EmbedlabError(f"--port must be 1..65535, not {port}")
        if keys is not None and not keys.is_file():
            raise EmbedlabError(
                f"{keys}: no such keys file (create one with `embedlab keys create`)"
            )
        cfg = ServeConfig(
            paths=[str(m) for m in models],
            keys_file=str(keys) if keys else None,
            max_body_bytes=max_body_bytes,
            max_texts=max_texts,
            max_chars=max_chars,
            max_batch_rows=max_batch_rows,
            max_wait_ms=max_wait_ms,
            max_queue_rows=max_queue_rows,
            max_batch_tokens=max_batch_tokens,
            batching=batching,
            cors_origins=list(cors_origin or []),
            backend=backend,
            watch=watch,
            watch_interval=watch_interval,
            read_only=read_only,
            signing_key_file=str(require_signature) if require_signature else None,
            public_metrics=public_metrics,
            query_maps=_query_maps(query_map),
        )
        if watch_interval <= 0:
            raise EmbedlabError("--watch-interval must be more than 0 seconds")
        service = create_app(cfg)
        names = ", ".join(service.state.registry.names())
        console.print(
            f"serving {names} on http://{host}:{port} "
            f"({'API keys required' if keys else 'no API keys'}; batching "
            f"{'on' if batching else 'off'}{'; watching for new versions' if watch else ''}"
            f"{'; read-only' if read_only else ''}"
            f"{'; signed bundles only' if require_signature else ''}); "
            f"playground at http://{host}:{port}/; "
            "Ctrl-C stops"
        )
    uvicorn.run(service, host=host, port=port, log_level="warning", access_log=False)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what uses the key.")],
    keys: KeysFileOption,
    model: Annotated[
        list[str] | None, typer.Option(help="Allow only this model (repeat; default: all).")
    ] = None,
    rate: Annotated[
        int | None, typer.Option(help="Requests a minute this key may make (default: no cap).")
    ] = None,
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Also let the key change its models (POST /v1/models/NAME/classes).",
        ),
    ] = False,
) -> None:
    """Create a key; the token is printed once and only its hash is stored.

    [bold]Example[/]

      embedlab keys create support-bot --keys keys.json --model intents --rate 600
    """
    from embedlab.serve.keys import KeyStore

    with user_errors():
        key, token = KeyStore(keys).create(name, models=model, rate_per_minute=rate, write=write)
        console.print(
            f"key {key.id} ({key.name}) for {', '.join(key.models)}"
            f"{' (read and write)' if key.write else ''}; the token, shown once:"
        )
        print(token)


@keys_app.command("list")
def keys_list(keys: KeysFileOption) -> None:
    """List keys (ids, names, models, limits — never tokens).

    [bold]Example[/]

      embedlab keys list --keys keys.json
    """
    from embedlab.serve.keys import KeyStore

    with user_errors():
        for k in KeyStore(keys).listing():
            state = "revoked" if k["revoked"] else "live"
            rate = f"{k['rate_per_minute']}/min" if k["rate_per_minute"] else "no rate cap"
            access = "read+write" if k.get("write") else "read"
            console.print(
                f"{k['id']}  {k['name']}  {state}  models {', '.join(k['models'])}  {access}  "
                f"{rate}  created {k['created']}"
            )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")],
    keys: KeysFileOption,
) -> None:
    """Revoke a key: a running server answers its requests with 401 from the next request
    on (it re-reads the keys file when the file changes).

    [bold]Example[/]

      embedlab keys revoke 3f9a2c1b --keys keys.json   (the id from keys list)
    """
    from embedlab.serve.keys import KeyStore

    with user_errors():
        k = KeyStore(keys).revoke(key_id)
        console.print(f"revoked key {k.id} ({k.name})")


sign_key_app = typer.Typer(
    help="Signing keys for model bundles (HMAC-SHA256 over bundle.json).\n\n"
    "[bold]Example[/]\n\n"
    "  embedlab keys sign-key create signing.key",
    rich_markup_mode="rich",
    no_args_is_help=True,
)
keys_app.add_typer(sign_key_app, name="sign-key")


@sign_key_app.command("create")
def sign_key_create(
    path: Annotated[Path, typer.Argument(help="Where to write the key file (mode 0600).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key file.")] = False,
) -> None:
    """Create a random 256-bit signing key; keep the file secret.

    [bold]Examples[/]

      embedlab keys sign-key create signing.key

      embedlab fit train.csv -o model/ --sign signing.key

      embedlab serve model/ --require-signature signing.key
    """
    from embedlab.store.signing import create_key

    with user_errors():
        key = create_key(path, force=force)
        console.print(f"wrote signing key {key.key_id} to {path} (mode 0600; keep it secret)")


BundleArgument = Annotated[Path, typer.Argument(help="A model bundle made by `embedlab fit`.")]
SigningKeyOption = Annotated[Path, typer.Option("--key", help="The signing key file.")]


def _with_key(bundle: Path, key: Path, verify_only: bool) -> None:
    """Sign ``bundle`` with the key in ``key`` (verified first), or only verify it."""
    from embedlab.store.bundle import read_bundle, sign_bundle
    from embedlab.store.signing import load_key

    with user_errors():
        k = load_key(key)
        if verify_only:
            read_bundle(bundle, key=k)
            console.print(f"{bundle}: signed with key {k.key_id}, every file as signed")
        else:
            sign_bundle(bundle, k)
            console.print(f"signed {bundle} with key {k.key_id}")


@keys_app.command("sign")
def keys_sign(bundle: BundleArgument, key: SigningKeyOption) -> None:
    """Sign an existing bundle (it is verified first: a damaged bundle is not signed).

    [bold]Example[/]

      embedlab keys sign model/ --key signing.key
    """
    _with_key(bundle, key, verify_only=False)


@keys_app.command("verify")
def keys_verify(bundle: BundleArgument, key: SigningKeyOption) -> None:
    """Check that a bundle is signed with a key and unchanged since (exit 2 if not).

    [bold]Example[/]

      embedlab keys verify model/ --key signing.key
    """
    _with_key(bundle, key, verify_only=True)
