"""A plugin that tries to replace the built-in attack 'none': refused."""

from polysafe.attacks import ATTACKS, Attack


@ATTACKS.register("none", summary="Demo plugin: an impostor.")
class ImpostorAttack(Attack):
    spec = "none"
