"""modules/wire.py writes what the proto API writes."""

import tensorflow as tf

from ondevice_rec.modules import wire


def test_wire_entries_parse_to_the_example_the_proto_api_builds():
    """Strings (multi-byte, several, none, 200 bytes: a two-byte length), int64 (negative, 2^40), floats and
    empty lists of each kind."""
    values = {"s": ["a", "é", "ü" * 100], "none": [], "i": [0, -3, 2 ** 40, 127, 128], "f": [4.5, 0.0, -1.25],
              "no_i": [], "no_f": []}
    kinds = {"s": wire.BYTES, "none": wire.BYTES, "i": wire.INT64S, "no_i": wire.INT64S, "f": wire.FLOATS,
             "no_f": wire.FLOATS}
    expected, entries = tf.train.Example(), []
    for name, vals in values.items():
        feature = expected.features.feature[name]
        if kinds[name] == wire.BYTES:
            feature.bytes_list.value.extend(v.encode() for v in vals)
            entries.append(wire.entry(name, wire.BYTES, wire.bytes_payload(v.encode() for v in vals)))
        elif kinds[name] == wire.INT64S:
            feature.int64_list.value.extend(vals)
            entries.append(wire.entry(name, wire.INT64S, wire.int64_payload(vals)))
        else:
            feature.float_list.value.extend(vals)
            entries.append(wire.entry(name, wire.FLOATS, wire.float_payload(vals)))
    got = tf.train.Example.FromString(wire.example(b"".join(entries)))
    assert got == expected
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert [got.features.feature[n].WhichOneof("kind") for n in ("none", "no_i", "no_f")] == [
        "bytes_list", "int64_list", "float_list"]
