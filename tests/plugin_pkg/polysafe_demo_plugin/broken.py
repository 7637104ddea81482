"""A plugin whose import fails: polysafe must warn in one line and carry on."""

raise RuntimeError("this demo plugin is broken on purpose\nand its message has two lines")
