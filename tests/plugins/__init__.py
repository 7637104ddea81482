"""Three example plugins, written as a third-party package would write them (see the README's "write a plugin"):
`twolang` (a two-language benchmark from a file), `zeroone` (a StrongREJECT-style judge scored 0-1) and
`payload_split` (an attack). Importing a module registers its plugin; tests/test_example_plugins.py runs each
through the public kit, `polysafe.testing`, unmodified."""
