"""The admin's JSON editor: a textarea that pretty-prints, checks syntax as you type and
refuses to submit broken JSON. Its script is vendored (no CDN), so the admin works offline.

Schema checks stay on the server (the payload registry is the single source of truth);
the browser only helps with syntax.
"""

import json

from django import forms

from kernel import input_limits
from kernel.errors import InvalidInput


class JsonEditorWidget(forms.Textarea):
    template_name = "artifacts/widgets/json_editor.html"

    class Media:
        css = {"all": ("artifacts/admin/json_editor.css",)}
        js = ("artifacts/admin/json_editor.js",)

    min_rows, max_rows = 6, 32

    def __init__(self, attrs=None):
        defaults = {"spellcheck": "false", "class": "json-editor-input", "data-json-editor": "1"}
        self.fixed_rows = "rows" in (attrs or {})
        super().__init__({**defaults, **(attrs or {})})

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        if not self.fixed_rows:
            # Tall enough for the payload, within bounds; the editor can still resize it.
            lines = str(value or "").count("\n") + 2
            context["widget"]["attrs"]["rows"] = max(self.min_rows, min(self.max_rows, lines))
        return context


class PrettyJSONField(forms.JSONField):
    """A JSONField shown indented, keys in their stored order, so edits diff cleanly."""

    widget = JsonEditorWidget

    def to_python(self, value):
        """Read through the API's bounded loader: NaN, Infinity, overflowing numbers and
        runaway nesting are form errors, as they are 400s in the API."""
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            return input_limits.loads(value, field="payload")
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message, code="invalid") from None

    def bound_data(self, data, initial):
        # A form shown again (with its errors) shows exactly what was typed: parsing it once
        # more could only fail the same way (runaway nesting) or lose what it said.
        if self.disabled or not isinstance(data, str):
            return super().bound_data(data, initial)
        return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)
