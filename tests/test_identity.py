"""The checkpoint identity check across versions of the identity record."""

from preact.checkpointing import identity_differences


def test_fields_both_record_are_compared():
    saved = {"model": {"depth": 110, "unit": "full_preact"}, "num_classes": 10}
    current = {"model": {"depth": 164, "unit": "full_preact"}, "num_classes": 10}
    assert identity_differences(saved, current) == ["model.depth: checkpoint 110, config 164"]


def test_fields_added_or_dropped_since_the_checkpoint_are_not_compared():
    # An older checkpoint: no optimizer record, and a model field that has since become
    # layout-free (it no longer changes the state) and left the identity.
    saved = {"model": {"depth": 110, "fused_bn_relu": True}, "num_classes": 10}
    current = {"model": {"depth": 110}, "num_classes": 10, "optimizer": {"optimizer": "sgd"}}
    assert identity_differences(saved, current) == []


def test_an_empty_record_differs_from_everything():
    diffs = identity_differences({}, {"num_classes": 10})
    assert diffs == ["num_classes: checkpoint None, config 10"]
