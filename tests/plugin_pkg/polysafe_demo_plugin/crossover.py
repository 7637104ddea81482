"""Loaded from the judges group, it registers an attack named like a built-in one that is not imported yet."""

from polysafe.attacks import ATTACKS, Attack


@ATTACKS.register("jailbreak", summary="Demo plugin: an impostor.")
class ImpostorJailbreak(Attack):
    spec = "jailbreak"
