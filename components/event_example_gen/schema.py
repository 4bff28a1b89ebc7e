"""The curated schema of the events (ImportSchemaGen -> ExampleValidator), derived from the EventSpec.

What the spec declares must be there is required (user, item, timestamp, its milliseconds for ``unix_ms`` and
ISO-8601 logs; the rating when the log has one,
within its range); item features are optional (an item missing from the items file has none). A log with no
rating column or no items file gives a schema without those features, so it is valid.
"""

from __future__ import annotations

import hashlib
import os

from ondevice_rec.data.events import EventSpec
from ondevice_rec.modules import features

SCHEMA_FOLDER = "curated_schema"
# The schema of every MovieLens preset (they give the same event features), shipped with the package so that
# a compiled Kubeflow pipeline reads it inside the image; a test keeps it equal to curated_schema's.
PRESET_SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "movielens_events.schema.pbtxt")


def curated_schema(spec: EventSpec):
    """``schema_pb2.Schema`` of the events that ``spec`` reads."""
    from tensorflow_metadata.proto.v0 import schema_pb2
    schema = schema_pb2.Schema()

    def add(name, kind, required=True, single=True):
        feature = schema.feature.add(name=name, type=kind)
        if required:
            feature.presence.min_fraction = 1.0
            feature.presence.min_count = 1
        else:
            feature.presence.min_count = 0
        if single and required:
            feature.shape.dim.add(size=1)
        else:
            feature.value_count.min = 0
        return feature

    add(features.EVENT_USER_ID, schema_pb2.BYTES)
    add(features.EVENT_ITEM_ID, schema_pb2.BYTES)
    add(features.EVENT_TIMESTAMP, schema_pb2.INT).int_domain.min = 0
    if spec.has_millis:
        millis = add(features.EVENT_MILLIS, schema_pb2.INT).int_domain
        millis.min, millis.max = 0, 999
    if spec.has_rating:
        rating = add(features.EVENT_RATING, schema_pb2.FLOAT)
        if spec.rating_range:
            rating.float_domain.min, rating.float_domain.max = spec.rating_range
    if spec.items is not None:
        add(features.EVENT_TITLE, schema_pb2.BYTES, required=False)
        for name in spec.categorical_features():
            add(features.CATEGORICAL_PREFIX + name, schema_pb2.BYTES, required=False, single=False)
        for name in spec.numeric_features():
            add(features.NUMERIC_PREFIX + name, schema_pb2.FLOAT, required=False, single=False)
    return schema


def write_curated_schema(spec: EventSpec, pipeline_root: str) -> str:
    """Writes the schema under ``pipeline_root`` (named by its content, so an unchanged spec gives the same
    path and cached runs stay cached) and returns the path; ``tf.io.gfile``, so a bucket root works."""
    import tensorflow as tf
    text = schema_text(spec)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    path = os.path.join(pipeline_root, SCHEMA_FOLDER, f"events-{digest}.schema.pbtxt")
    if not tf.io.gfile.exists(path):
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(text)
    return path


def schema_text(spec: EventSpec) -> str:
    from google.protobuf import text_format
    return text_format.MessageToString(curated_schema(spec))


def schema_file_for(spec, pipeline_root: str) -> str:
    """The curated schema file of a run: the shipped preset schema for MovieLens folders (``spec`` None),
    else one written under the pipeline root."""
    return PRESET_SCHEMA_FILE if spec is None else write_curated_schema(spec, pipeline_root)
