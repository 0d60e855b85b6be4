"""docs/protocol-vectors.json is what its independent generator (tests/support/gen_protocol_vectors.py)
makes: the frozen file and the script that made it cannot drift apart unnoticed."""

import json

from tests.support import gen_protocol_vectors as generator


def test_the_frozen_vectors_are_what_the_generator_makes():
    assert generator.VECTORS.read_text() == generator.dump(generator.doc)


def test_a_changed_vector_would_be_told_apart():
    changed = json.loads(generator.dump(generator.doc))
    changed["frames"][0]["wire_hex"] = "00" + changed["frames"][0]["wire_hex"]
    assert generator.dump(changed) != generator.VECTORS.read_text()
