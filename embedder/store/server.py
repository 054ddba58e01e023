"""The server backend: an `ImageStore` on qdrant-client, for a Qdrant server or cluster (QDRANT_URL).

Also qdrant-client's local mode, the embedded fallback when Qdrant Edge is not installed.
HTTP details (one deadline per request, HTML answers) are in `http.py`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from embedder.config import Settings
from embedder.errors import CollectionMismatchError, StoreError, StoreInUseError
from embedder.store.contract import (
    FACET_LIMIT, SCROLL_PAGE, VISUAL, WORDS, Hit, ImageStore, Point, Recorded, SearchFilter, SparseWords,
    damaged, facet_counts, mismatch_message, pick_vector, visual_mismatch_message,
)
from embedder.store.fusion import Boost, Dbsf, Fusion, Nearest, Rrf
from embedder.store.http import NotQdrantAnswer, check_version, server_client
from embedder.store.conditions import AnyOf, Condition, Either, Equals, Every, HasWord, Not, OnDays, combined
from embedder.store.lock import FolderLock
from embedder.store.policy import POLICY, SearchPolicy
from embedder.store.schema import (
    DAY_FIELD, INTEGER_FIELDS, KEYWORD_FIELDS, NUMBER_FIELDS, PRINCIPAL_FIELDS, TEXT_FIELDS, day_of, with_day,
)

log = logging.getLogger(__name__)

# What reads return of a payload: all of it but the derived `day`, which is the store's own.
SHOWN_PAYLOAD = models.PayloadSelectorExclude(exclude=[DAY_FIELD])


@contextmanager
def _qdrant_errors(location: str, timeout_s: int | None = None) -> Iterator[None]:
    """Turn qdrant-client and transport errors into one `StoreError` line (never with the key)."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - every client failure means the same to a user
        source = getattr(exc, "source", None)  # what qdrant-client's ResponseHandlingException wraps
        if isinstance(source, NotQdrantAnswer):
            raise StoreError(
                f"The server at {location} answered with HTML (HTTP {source.status}), not Qdrant's API: is QDRANT_URL right? "
                "It should be the Qdrant server's address, e.g. http://127.0.0.1:6333."
            ) from None
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            raise StoreError(f"Qdrant at {location} refused the API key (HTTP {status}). Check QDRANT_API_KEY.") from None
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "already accessed by another instance" in text:
            raise StoreInUseError(f"The storage folder {location} is in use by another process.") from None
        if status is None and "timed out" in text.lower() and timeout_s is not None:
            text = f"timed out: no complete answer within QDRANT_TIMEOUT, {timeout_s} s"
        if status is None and any(w in text.lower() for w in ("connect", "timed out", "refused", "resolve", "name or service")):
            raise StoreError(
                f"Cannot reach the Qdrant server at {location} ({text}). Start it (docker compose up qdrant) "
                "or unset QDRANT_URL to use the embedded store."
            ) from None
        raise StoreError(f"Qdrant at {location} failed: {text}") from None


class QdrantStore(ImageStore):
    """An `ImageStore` on qdrant-client: a server, or local mode in a folder."""

    def __init__(
        self,
        client: QdrantClient,
        settings: Settings,
        model_id: str,
        dim: int,
        lock: FolderLock | None = None,
        visual: tuple[str, int] | None = None,
    ) -> None:
        self._client = client
        self._lock = lock
        self._timeout_s = settings.qdrant_timeout if settings.qdrant_url else None
        self._serial = threading.RLock() if lock else nullcontext()
        self.mode = settings.storage_mode
        self.location = settings.storage_location
        self.collection = settings.collection
        self.model_id = model_id
        self.dim = dim
        self.visual_model, self.visual_dim = visual or (None, None)
        self._named = False  # the collection's vectors are named ("" and VISUAL): writes name them too
        self._has_visual = False
        try:
            with self._errors():
                self._ensure_collection(settings)
        except Exception:
            self.close()
            raise

    @classmethod
    def embedded(
        cls,
        settings: Settings,
        model_id: str,
        dim: int,
        lock: FolderLock | None = None,
        visual: tuple[str, int] | None = None,
    ) -> QdrantStore:
        lock = lock or FolderLock(settings.qdrant_path)
        try:
            try:
                client = QdrantClient(path=str(settings.qdrant_path))
            except Exception as exc:  # noqa: BLE001 - the folder's own files cannot be read back
                raise damaged(settings.qdrant_path, exc) from None
        except Exception:
            lock.release()
            raise
        return cls(client, settings, model_id, dim, lock, visual)

    @classmethod
    def server(cls, settings: Settings, model_id: str, dim: int, visual: tuple[str, int] | None = None) -> QdrantStore:
        location = settings.storage_location
        with _qdrant_errors(location, settings.qdrant_timeout):
            client = server_client(settings.qdrant_url, location, settings.qdrant_api_key, settings.qdrant_timeout)
            try:
                client.get_collections()  # fail now, with a clear message, if unreachable or refused
                check_version(client, location)
            except Exception:
                client.close()
                raise
        return cls(client, settings, model_id, dim, visual=visual)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Around every client call: one clear error, and in local mode one call at a time
        (qdrant-client's local mode is not thread-safe; browser sessions share one store)."""
        with self._serial, _qdrant_errors(self.location, self._timeout_s):
            yield

    def _ensure_collection(self, settings: Settings) -> None:
        name = self.collection
        if not self._client.collection_exists(name):
            log.info("creating collection %s (%d-d, cosine) for %s", name, self.dim, self.model_id)
            cluster = (
                dict(
                    shard_number=settings.shard_number,
                    replication_factor=settings.replication_factor,
                    write_consistency_factor=settings.write_consistency_factor,
                )
                if self.mode == "server"
                else {}
            )
            config = collection_config(self.dim, POLICY, self.visual_dim)
            try:
                self._client.create_collection(
                    name, metadata=self._metadata(self.visual_model is not None), **config, **cluster
                )
            except Exception as exc:  # noqa: BLE001 - another worker may have created it a moment ago
                if getattr(exc, "status_code", None) != 409 and "already exists" not in str(exc):
                    raise
                log.info("collection %s was created by another worker; checking it", name)
            else:
                if self.mode == "server":
                    self._create_payload_indexes()
                self._named = self._has_visual = self.visual_dim is not None
                self.has_words = True
                return
        info = self._client.get_collection(name)
        config = info.config
        params = config.params.vectors
        self._named = isinstance(params, dict)
        named = params if isinstance(params, dict) else {"": params}
        size = getattr(named.get(""), "size", None)
        distance = getattr(named.get(""), "distance", None)
        metadata = config.metadata or {}
        recorded = metadata.get("model")
        if recorded is None and size == self.dim and self._client.count(name, exact=True).count == 0:
            self._client.update_collection(name, metadata={**metadata, **self._metadata(False)})
            recorded = self.model_id
        if size != self.dim or recorded != self.model_id or distance != models.Distance.COSINE:
            raise CollectionMismatchError(mismatch_message(name, size, recorded, self.model_id, self.dim))
        self._check_visual(name, named.get(VISUAL), metadata)
        self._ensure_words(config.params.sparse_vectors or {})
        if self.mode == "server":  # a field added to the schema since the collection was made (e.g. tags)
            self._create_payload_indexes(set(getattr(info, "payload_schema", None) or {}))

    def _ensure_words(self, sparse: Mapping[str, Any]) -> None:
        """A collection made before points had words gets the WORDS sparse vector now, in place (Qdrant
        1.18 and later add a named vector to an existing collection); the next index run fills it in.
        An older server cannot: the collection is searched by its pictures alone, and says why once."""
        if WORDS in sparse:
            self.has_words = True
            return
        config = models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF))
        try:
            self._client.create_vector_name(self.collection, WORDS, config, wait=True)
        except Exception as exc:  # noqa: BLE001 - a server before 1.18: no words, pictures still found
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning(
                "Qdrant at %s could not add the words vector to collection %r (%s; it needs Qdrant 1.18 or "
                "later): words in pictures, file names and tags are not searchable in it. Upgrade Qdrant, or "
                "set QDRANT_COLLECTION to a new name and index your folders again (the old collection stays "
                "as it is).", self.location, self.collection, text,
            )
            return
        log.info("added the words vector to collection %s (in place; no point changes)", self.collection)
        self.has_words = True

    def _metadata(self, visual: bool) -> dict[str, Any]:
        """What the collection records: the model (and the visual model) that made its vectors."""
        record: dict[str, Any] = {"model": self.model_id, "dim": self.dim}
        return {**record, "visual_model": self.visual_model, "visual_dim": self.visual_dim} if visual else record

    def _check_visual(self, name: str, params: Any, metadata: dict[str, Any]) -> None:
        """The VISUAL vector: kept whether or not it is asked for; a collection without one cannot get
        it in place (a server adds no vector to an existing collection); another model is refused."""
        self._has_visual = params is not None
        if self.visual_model is None:
            return
        if params is None:
            raise CollectionMismatchError(
                f"Collection {name!r} has no visual vectors, and EMBEDDER_VISUAL_MODEL is {self.visual_model!r}: "
                "Qdrant cannot add them to an existing collection. Set QDRANT_COLLECTION to a new name and "
                "index again (the old collection stays as it is), or unset EMBEDDER_VISUAL_MODEL."
            )
        recorded, size = metadata.get("visual_model"), getattr(params, "size", None)
        if recorded != self.visual_model or size != self.visual_dim:
            raise CollectionMismatchError(
                visual_mismatch_message(name, recorded, size, self.visual_model, self.visual_dim or 0)
            )

    def _create_payload_indexes(self, present: set[str] = frozenset()) -> None:
        for name in KEYWORD_FIELDS:
            if name not in present:
                self._client.create_payload_index(self.collection, name, models.PayloadSchemaType.KEYWORD)
        for name in NUMBER_FIELDS:
            if name not in present:
                self._client.create_payload_index(self.collection, name, models.PayloadSchemaType.FLOAT)
        for name in INTEGER_FIELDS:
            if name not in present:
                self._client.create_payload_index(self.collection, name, integer_index(name))
        words = models.TextIndexParams(type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WHITESPACE, lowercase=True)
        for name in TEXT_FIELDS:
            if name not in present:
                self._client.create_payload_index(self.collection, name, words)

    def count(self) -> int:
        with self._errors():
            return self._client.count(self.collection, exact=True).count

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        with self._errors():
            records = self._client.retrieve(self.collection, list(ids), with_payload=SHOWN_PAYLOAD, with_vectors=False)
        return {str(r.id): r.payload or {} for r in records}

    def upsert(self, points: Sequence[Point]) -> None:
        if not points:
            return
        structs = [models.PointStruct(id=p.id, vector=self._vectors(p), payload=with_day(p.payload)) for p in points]
        with self._errors():
            self._client.upsert(self.collection, structs, wait=True)

    def _vectors(self, point: Point) -> Any:
        """The CLIP vector as a list (unnamed collections) or by name, with the VISUAL and WORDS ones if any."""
        clip = np.asarray(point.vector, dtype=np.float32).tolist()
        if point.visual is not None and not self._has_visual:
            raise StoreError(f"Collection {self.collection!r} has no visual vectors: unset EMBEDDER_VISUAL_MODEL.")
        words = {WORDS: qdrant_sparse(point.words)} if point.words and self.has_words else {}
        if not self._named and not words:
            return clip
        visual = {VISUAL: np.asarray(point.visual, dtype=np.float32).tolist()} if point.visual is not None else {}
        return {"": clip, **visual, **words}

    def set_words(self, vectors: Mapping[str, SparseWords | None]) -> None:
        if not vectors or not self.has_words:
            return
        given = [models.PointVectors(id=i, vector={WORDS: qdrant_sparse(w)}) for i, w in vectors.items() if w]
        cleared = [i for i, w in vectors.items() if not w]
        with self._errors():
            if given:
                self._client.update_vectors(self.collection, given, wait=True)
            if cleared:
                self._client.delete_vectors(self.collection, [WORDS], models.PointIdsList(points=cleared), wait=True)

    def set_visual(self, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        if not self._has_visual:
            raise StoreError(f"Collection {self.collection!r} has no visual vectors: unset EMBEDDER_VISUAL_MODEL.")
        update = [
            models.PointVectors(id=i, vector={VISUAL: np.asarray(v, dtype=np.float32).tolist()})
            for i, v in vectors.items()
        ]
        with self._errors():
            self._client.update_vectors(self.collection, update, wait=True)

    def without_visual(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Inside Qdrant: the points lacking the VISUAL vector (every point, if the collection has none)."""
        lacking = models.Filter(must_not=[models.HasVectorCondition(has_vector=VISUAL)]) if self._has_visual else None
        offset = None
        while True:
            with self._errors():
                records, offset = self._client.scroll(
                    self.collection, scroll_filter=lacking, limit=SCROLL_PAGE, offset=offset, with_payload=SHOWN_PAYLOAD
                )
            yield from ((str(r.id), r.payload or {}) for r in records)
            if offset is None:
                return

    def set_payload(self, point_id: str, payload: dict[str, Any]) -> None:
        with self._errors():
            self._client.overwrite_payload(self.collection, with_day(payload), points=[point_id], wait=True)

    def fill_days(self) -> int:
        """Give every point stored without `day` (made before the field) its day, from its stored date.

        Searches do not wait for it: the server's date filter takes `day` or, for a point without
        one, `date` (`to_qdrant_filter`), since other processes, even older versions, may write.
        """
        lacking = models.Filter(
            must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=DAY_FIELD))],
            must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="date"))],
        )
        filled, offset = 0, None
        while True:
            with self._errors():
                records, offset = self._client.scroll(
                    self.collection, scroll_filter=lacking, limit=SCROLL_PAGE, offset=offset, with_payload=["date"]
                )
            by_day: dict[int, list[Any]] = {}
            for record in records:
                day = day_of((record.payload or {}).get("date"))
                if day is not None:
                    by_day.setdefault(day, []).append(record.id)
            with self._errors():
                for day, ids in by_day.items():
                    self._client.set_payload(self.collection, {DAY_FIELD: day}, points=ids, wait=True)
            filled += sum(map(len, by_day.values()))
            if offset is None:
                return filled

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._errors():
            self._client.delete(self.collection, models.PointIdsList(points=list(ids)), wait=True)

    def query(
        self,
        vector: np.ndarray,
        limit: int,
        offset: int = 0,
        score_threshold: float | None = None,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        using: str | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        if using and not self._has_visual:
            return []  # no point has a visual vector
        with self._errors():
            response = self._client.query_points(
                self.collection,
                query=np.asarray(vector, dtype=np.float32).tolist(),
                using=using or None,
                limit=limit,
                offset=offset,
                score_threshold=score_threshold,
                query_filter=to_qdrant_filter(where),
                # local mode always searches exactly (and warns about search_params on every query)
                search_params=search_params(POLICY, exact) if self.mode == "server" else None,
                with_payload=SHOWN_PAYLOAD,
                with_vectors=self._with(with_vectors, using),
            )
        return [
            Hit(str(p.id), float(p.score), p.payload or {}, pick_vector(p.vector, using) if with_vectors else None)
            for p in response.points
        ]

    def fused(
        self,
        parts: Sequence[Nearest],
        fusion: Fusion,
        limit: int,
        offset: int = 0,
        where: SearchFilter | None = None,
        with_vectors: bool = False,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        def prefetch(part: Nearest) -> models.Prefetch:
            sparse = isinstance(part.vector, SparseWords)
            return models.Prefetch(
                query=qdrant_sparse(part.vector) if sparse else np.asarray(part.vector, dtype=np.float32).tolist(),  # type: ignore[arg-type]
                using=WORDS if sparse else part.using or None,
                limit=part.limit,
                filter=to_qdrant_filter(part.within(where), part.must),
                score_threshold=part.score_threshold,
                # local mode always searches exactly (and warns about search params on every query)
                params=search_params(POLICY, False) if self.mode == "server" and not sparse else None,
            )

        with self._errors():
            response = self._client.query_points(
                self.collection,
                prefetch=[prefetch(p) for p in parts],
                query=qdrant_fusion(fusion),
                limit=limit,
                offset=offset,
                score_threshold=score_threshold,
                with_payload=SHOWN_PAYLOAD,
                with_vectors=self._with(with_vectors, None),
            )
        return [
            Hit(str(p.id), float(p.score), p.payload or {}, pick_vector(p.vector, None) if with_vectors else None)
            for p in response.points
        ]

    def _with(self, with_vectors: bool, using: str | None) -> bool | list[str]:
        """Which vectors to bring back: the one asked for, by name where the collection names them."""
        if not with_vectors or not (self._named or self.has_words):
            return with_vectors and not using
        return [using or ""]

    def vector(self, point_id: str, using: str | None = None) -> np.ndarray | None:
        if using and not self._has_visual:
            return None
        with self._errors():
            records = self._client.retrieve(
                self.collection, [point_id], with_payload=False, with_vectors=self._with(True, using)
            )
        return pick_vector(records[0].vector, using) if records else None

    def scroll(
        self, with_vectors: bool = False, where: SearchFilter | None = None, using: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any], np.ndarray | None]]:
        offset = None
        while True:
            with self._errors():
                records, offset = self._client.scroll(
                    self.collection,
                    scroll_filter=to_qdrant_filter(where),
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=SHOWN_PAYLOAD,
                    with_vectors=self._with(with_vectors, using),
                )
            for r in records:
                vector = pick_vector(r.vector, using) if with_vectors else None
                yield str(r.id), r.payload or {}, vector
            if offset is None:
                return

    def newest(self, limit: int, where: SearchFilter | None = None, oldest: bool = False) -> list[Hit]:
        order = models.OrderBy(key="date", direction=models.Direction.ASC if oldest else models.Direction.DESC)
        with self._errors():
            records, _ = self._client.scroll(
                self.collection, scroll_filter=to_qdrant_filter(where), limit=limit, order_by=order, with_payload=SHOWN_PAYLOAD
            )
        return [Hit(str(r.id), 0.0, r.payload or {}) for r in records]

    def facet(self, key: str, where: SearchFilter | None = None) -> dict[str, int]:
        with self._errors():
            response = self._client.facet(
                self.collection, key, facet_filter=to_qdrant_filter(where), limit=FACET_LIMIT, exact=True
            )
        return facet_counts((hit.value, hit.count) for hit in response.hits)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:  # noqa: BLE001 - closing must never raise over the real error
            log.warning("closing Qdrant client failed: %s", exc)
        if self._lock:
            self._lock.release()


def collection_config(dim: int, policy: SearchPolicy, visual_dim: int | None = None) -> dict[str, Any]:
    """`create_collection` arguments from the search policy: the same switch from exact search to
    HNSW + int8 quantisation as the embedded store's (embedder/store/policy.py), so scores and recall
    do not depend on the backend. Qdrant sizes these thresholds in KB, as Edge does. The CLIP vector
    is unnamed; the VISUAL one, if asked for, sits beside it; the WORDS sparse vector is weighed by IDF."""
    clip = models.VectorParams(size=dim, distance=models.Distance.COSINE, on_disk=policy.originals_on_disk)
    vectors: Any = clip
    if visual_dim:
        look = models.VectorParams(size=visual_dim, distance=models.Distance.COSINE, on_disk=policy.originals_on_disk)
        vectors = {"": clip, VISUAL: look}
    quantization = (
        models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=policy.quantile, always_ram=True)
        )
        if policy.quantize
        else None
    )
    return {
        "vectors_config": vectors,
        "sparse_vectors_config": {WORDS: models.SparseVectorParams(modifier=models.Modifier.IDF)},
        "hnsw_config": models.HnswConfigDiff(
            m=policy.m,
            ef_construct=policy.ef_construct,
            full_scan_threshold=policy.full_scan_threshold_kb(dim),
            payload_m=policy.payload_m,
        ),
        "optimizers_config": models.OptimizersConfigDiff(
            indexing_threshold=policy.indexing_threshold_kb(dim),
            max_segment_size=max(policy.indexing_threshold_kb(dim), policy.max_segment_size_kb(dim)),
        ),
        "quantization_config": quantization,
    }


def search_params(policy: SearchPolicy, exact: bool) -> models.SearchParams:
    """Per-query parameters, as the embedded store's: the policy's ef and 2× rescoring with the originals."""
    if exact:
        return models.SearchParams(exact=True, quantization=models.QuantizationSearchParams(ignore=True))
    return models.SearchParams(
        hnsw_ef=policy.hnsw_ef,
        quantization=models.QuantizationSearchParams(rescore=True, oversampling=policy.oversampling)
        if policy.quantize
        else None,
        acorn=models.AcornSearchParams(enable=True, max_selectivity=policy.acorn_max_selectivity)
        if policy.acorn_max_selectivity > 0
        else None,
    )


def qdrant_sparse(words: SparseWords) -> models.SparseVector:
    return models.SparseVector(indices=list(words.indices), values=list(words.values))


def qdrant_fusion(fusion: Fusion) -> Any:
    """The qdrant-client form of a neutral fusion (embedder/store/fusion.py)."""
    if isinstance(fusion, Rrf):
        return models.RrfQuery(rrf=models.Rrf(k=fusion.k, weights=list(fusion.weights) if fusion.weights else None))
    if isinstance(fusion, Dbsf):
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    assert isinstance(fusion, Boost)

    def share(of: float) -> models.MinExpression:  # min(1, words / of)
        return models.MinExpression(min=[1.0, models.DivExpression(div=models.DivParams(left="$score[1]", right=of, by_zero_default=0.0))])

    parts: list[Any] = ["$score[0]", models.MultExpression(mult=[fusion.bonus, share(fusion.floor)])]
    if fusion.lift:
        parts.append(models.MultExpression(mult=[fusion.lift, share(fusion.full)]))
    return models.FormulaQuery(formula=models.SumExpression(sum=parts), defaults={"$score[0]": 0.0, "$score[1]": 0.0})


def integer_index(name: str) -> models.IntegerIndexParams:
    """A range index on an integer field; a principal one orders the points of every segment Qdrant builds."""
    principal = name in PRINCIPAL_FIELDS or None
    return models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=False, range=True, is_principal=principal)


def to_qdrant_filter(where: SearchFilter | None, extra: tuple[Condition, ...] = ()) -> models.Filter | None:
    """The qdrant-client form of a `SearchFilter`'s neutral conditions (embedder/store/conditions.py),
    with `extra` conditions on top (a prefetch's own).

    A range of days asks each point for its `day`, or its `date` where it has no `day` (a point an
    older version wrote): unlike the embedded store, a server cannot know that no writer lacks it.
    """
    found = combined(where, extra)
    if found is None:
        return None

    def field(condition: Condition) -> Any:
        if isinstance(condition, Either):
            return models.Filter(should=[field(c) for c in condition.parts])
        if isinstance(condition, Every):
            return models.Filter(must=[field(c) for c in condition.parts])
        if isinstance(condition, Not):
            return models.Filter(must_not=[field(condition.part)])
        if isinstance(condition, HasWord):
            return models.FieldCondition(key=condition.key, match=models.MatchText(text=condition.word))
        if isinstance(condition, Equals):
            return models.FieldCondition(key=condition.key, match=models.MatchValue(value=condition.value))
        if isinstance(condition, AnyOf):
            return models.FieldCondition(key=condition.key, match=models.MatchAny(any=list(condition.values)))
        if isinstance(condition, OnDays):
            gte, lt = condition.date_bounds()
            by_date = models.Filter(must=[
                models.IsEmptyCondition(is_empty=models.PayloadField(key=DAY_FIELD)),
                models.FieldCondition(key="date", range=models.Range(gte=gte, lt=lt)),
            ])
            by_day = models.FieldCondition(key=DAY_FIELD, range=models.Range(gte=condition.first, lte=condition.last))
            return models.Filter(should=[by_day, by_date])
        return models.FieldCondition(key=condition.key, range=models.Range(gte=condition.gte, lte=condition.lte))

    must = [field(c) for c in found.must]
    must_not: list[models.Condition] = [models.HasIdCondition(has_id=list(found.exclude_ids))] if found.exclude_ids else []
    return models.Filter(must=must or None, must_not=must_not or None)


def server_collections(settings: Settings) -> list[dict[str, Any]]:
    """Every collection on the server: name, the model and size of its vectors, its exact image count
    and its visual model (None where it has none), by name."""
    location = settings.storage_location
    with _qdrant_errors(location, settings.qdrant_timeout):
        client = server_client(settings.qdrant_url or "", location, settings.qdrant_api_key, settings.qdrant_timeout)
        try:
            found = []
            for described in sorted(client.get_collections().collections, key=lambda c: c.name):
                config = client.get_collection(described.name).config
                params = config.params.vectors
                named = params if isinstance(params, dict) else {"": params}
                metadata = config.metadata or {}
                found.append({
                    "name": described.name,
                    "model": metadata.get("model"),
                    "dim": getattr(named.get(""), "size", None),
                    "images": client.count(described.name, exact=True).count,
                    "visual_model": metadata.get("visual_model") if VISUAL in named else None,
                })
            return found
        finally:
            client.close()


def recorded_on_server(settings: Settings) -> Recorded:
    """What the server's collection records in its metadata (model and vector size), asked without
    creating anything; one without them is left to the store's own checks (model and size unknown)."""
    location = settings.storage_location
    with _qdrant_errors(location, settings.qdrant_timeout):
        client = server_client(settings.qdrant_url, location, settings.qdrant_api_key, settings.qdrant_timeout)
        try:
            if not client.collection_exists(settings.collection):
                check_version(client, location)  # nothing else talks to this server: say it here
                return Recorded(exists=False)
            config = client.get_collection(settings.collection).config
        finally:
            client.close()
    vectors = config.params.vectors
    model = (config.metadata or {}).get("model")
    dim = getattr(vectors.get("") if isinstance(vectors, dict) else vectors, "size", None)
    if not isinstance(model, str) or not isinstance(dim, int):
        return Recorded(exists=True)
    return Recorded(exists=True, model=model, dim=dim)
