"""`reverse`: a toy translator that writes the text backwards."""

from polysafe.translators import TRANSLATORS


@TRANSLATORS.register("reverse", example="reverse", summary="Demo plugin: 'translates' by writing the text backwards.")
class ReverseTranslator:
    spec = "reverse"
    identity = "reverse/v1"

    def __init__(self, **_: object):
        pass

    async def translate(self, requests):
        return [request.text[::-1] for request in requests]
