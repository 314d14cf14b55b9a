"""The service's request bodies, made for a configuration so that /openapi.json states its
limits and the names it serves."""

from collections.abc import Sequence
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from embedlab.serve.config import ServeConfig

__all__ = ["NOT_BLANK", "RequestModels", "request_models"]

#: A text holds at least one character that is not blank. Blank is what Python's str.strip()
#: removes (the library refuses texts that are only that) and what JSON Schema's (ECMAScript)
#: and pydantic's (Rust) ``\s`` match: they differ on U+0085 and U+FEFF, and neither counts
#: the separators U+001C..U+001F, so those are named.
NOT_BLANK = r"[^\s\x1c-\x1f\u0085\ufeff]"


Level = Annotated[float, Field(gt=0, lt=1)]


class Guarantees(BaseModel):
    """What a request may ask of the models' conformal calibration."""

    # not nullable: leaving a field out says "none" (defaults are not validated)
    fdr: Level = Field(
        default=None,
        description="Reject as a batch: the texts Benjamini-Hochberg picks from their "
        "p-values, so that the expected share of in-scope texts among the rejected is at "
        "most this (instead of each text against the threshold).",
    )
    sets: Level = Field(
        default=None,
        description="Add each text's prediction set (/v1/classify, single-label models): "
        "the labels holding the true one with this probability.",
    )


class RequestModels(NamedTuple):
    """The request body classes of one service."""

    embeddings: type
    texts: type
    search: type
    classes: type
    suggest: type
    records: type


def request_models(
    cfg: ServeConfig,
    names: Sequence[str],
    max_dim: int,
    index_names: Sequence[str] = (),
    encoder_names: Sequence[str] = (),
) -> RequestModels:
    """The request bodies, with the service's limits in their schema (so /openapi.json says
    what is accepted): non-blank texts of at most ``max_chars``, at most ``max_texts`` of
    them, ``dimensions`` up to the widest served encoder; served model and index names listed.
    """
    text = Annotated[
        str, StringConstraints(min_length=1, max_length=cfg.max_chars, pattern=NOT_BLANK)
    ]
    texts = Annotated[list[text], Field(min_length=1, max_length=cfg.max_texts)]
    public = not cfg.keys_file  # with API keys the public schema does not list what is served
    shown = sorted(names or encoder_names)[:3] if public else ["my-model"]
    name = Annotated[str, StringConstraints(min_length=1), Field(examples=shown)]
    label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NOT_BLANK)]
    # in the schema only (an unknown name gets 404); an empty enum is not valid JSON Schema
    served = {"enum": sorted(names)} if names and public else {}
    served_index = {"enum": sorted(index_names)} if index_names and public else {}
    embedders = [*names, *encoder_names]
    served_embedder = {"enum": sorted(embedders)} if embedders and public else {}

    class EmbeddingsRequest(BaseModel):
        """OpenAI's embeddings request (``model``: a served model's or encoder's id)."""

        input: text | texts
        model: Annotated[name, Field(json_schema_extra=served_embedder)]
        dimensions: int | None = Field(default=None, ge=1, le=max_dim)
        encoding_format: Literal["float", "base64"] = "float"
        user: str | None = None

    class TextsRequest(Guarantees):
        """Texts for one model (``model``) or several (``models``, with ``model`` if given
        too: encoded once per encoder); at least one of the two is required."""

        model_config = ConfigDict(
            json_schema_extra={"anyOf": [{"required": ["model"]}, {"required": ["models"]}]}
        )
        input: text | texts
        # not nullable: leaving a field out says "none" (defaults are not validated)
        model: Annotated[name, Field(json_schema_extra=served)] = None
        models: Annotated[
            list[Annotated[name, Field(json_schema_extra=served)]], Field(min_length=1)
        ] = None
        top_k: int = Field(default=3, ge=1, le=50)
        explain: bool = Field(
            default=False,
            description="/v1/classify: add each text's explanation — the concepts behind "
            "its label (signed contributions to the margin over the runner-up) and behind "
            "its novelty score. Single-label models with concepts (`embedlab concepts`).",
        )

    class SearchRequest(BaseModel):
        """Query texts for a served index: the ``k`` nearest stored items of each, only
        those with one of ``labels`` when given."""

        input: text | texts
        index: Annotated[
            str, StringConstraints(min_length=1), Field(json_schema_extra=served_index)
        ]
        k: int = Field(default=10, ge=1, le=100)
        labels: Annotated[list[label], Field(min_length=1, max_length=1000)] = None

    from embedlab.data.readers import MISSING_LABEL_PATTERN

    # a class name: not a spelling of "missing" (NaN, NA, null: refused in files too)
    not_missing = Field(json_schema_extra={"not": {"pattern": MISSING_LABEL_PATTERN}})
    class_label = Annotated[label, not_missing]
    one_text, one_label = text, class_label  # (a field may not be annotated with its own name)

    class Example(BaseModel):
        """One labelled example."""

        text: one_text
        label: one_label

    class ClassesRequest(BaseModel):
        """Labelled examples of the classes to add (every label new to the model)."""

        examples: Annotated[list[Example], Field(min_length=1, max_length=cfg.max_texts)]
        parents: Annotated[dict[one_label, one_label], Field(max_length=1000)] = Field(
            default_factory=dict,
            description="new class -> its parent, for a model with a hierarchy (required "
            "there for each new class)",
        )

    found = (EmbeddingsRequest, TextsRequest, SearchRequest, ClassesRequest)
    return RequestModels(*found, _suggest_request(cfg, text, texts), _records_request(cfg))


def _records_request(cfg: ServeConfig) -> type:
    """The body of ``/v1/models/{name}/records`` (a table model's input)."""
    cell = Annotated[str, StringConstraints(max_length=cfg.max_chars)] | float | int | bool | None
    record = Annotated[dict[str, cell], Field(max_length=1000)]

    class RecordsRequest(BaseModel):
        """Records for a table model (`embedlab fit --cat-cols`): each a JSON object of
        column → value (its text column, categorical and numeric columns); a column a record
        leaves out, null or "" is a missing value."""

        records: Annotated[list[record], Field(min_length=1, max_length=cfg.max_texts)]
        top_k: int = Field(default=3, ge=1, le=50)

    return RecordsRequest


def _suggest_request(cfg: ServeConfig, text: Any, texts: Any) -> type:
    """The body of ``/v1/models/{name}/suggest`` (texts as the service accepts them)."""

    class SuggestRequest(BaseModel):
        """An unlabelled pool of texts: which ``n`` of them to label next, each with why
        (``embedlab suggest -m MODEL``)."""

        input: texts
        n: int = Field(default=10, ge=1, le=cfg.max_texts)
        strategy: Literal["auto", "typiclust", "margin", "coreset", "random"] = "auto"
        seed: int = Field(default=0, ge=0, le=2**31 - 1)
        labeled: Annotated[list[text], Field(max_length=cfg.max_texts)] = Field(
            default_factory=list,
            description="texts labelled already (beside the model's training rows): their "
            "regions count as covered",
        )

    return SuggestRequest
