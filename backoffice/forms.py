"""The support page's action form: what to do, on which of the user's objects, and why."""

from __future__ import annotations

from typing import Any

from django import forms

from backoffice.services import REASON_MAX

# action → (what the confirmation asks, the fields it needs besides the reason)
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "training_cancel": ("Cancel training #{object_id} and refund its credits", ("object_id",)),
    "training_retry": (
        "Retry training #{object_id} from its failed stage (its credits are held again)",
        ("object_id",),
    ),
    "credits_adjust": ("Adjust the balance by {amount:+d} credits (a ledger adjustment)", ("amount",)),
    "credits_refund": ("Refund ledger entry #{object_id} (a spend, at most once)", ("object_id",)),
    "notification_resend": ("Send the last notification e-mail again", ()),
    "model_publish": ("Publish model #{object_id} to Hugging Face again", ("object_id",)),
    "webhook_replay": ("Replay the stored {source} webhook #{object_id}", ("source", "object_id")),
}


class SupportActionForm(forms.Form):
    object_id = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    amount = forms.IntegerField(
        required=False,
        min_value=-1_000_000,
        max_value=1_000_000,
        help_text="Positive grants, negative takes.",
    )
    source = forms.ChoiceField(
        required=False, choices=[("replicate", "Replicate"), ("stripe", "Stripe")], widget=forms.HiddenInput
    )
    reason = forms.CharField(max_length=REASON_MAX, strip=True, help_text="Recorded in the admin log.")
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, action: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.action = action

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ACTIONS[self.action][1]:
            if data.get(name) in (None, ""):
                self.add_error(name, "This action needs it.")
        if self.action == "credits_adjust" and data.get("amount") == 0:
            self.add_error("amount", "An adjustment moves a non-zero number of credits.")
        return data

    def summary(self) -> str:
        """What the action will do, in words, for the confirmation."""
        data = {"object_id": None, "amount": 0, "source": "", **self.cleaned_data}
        return ACTIONS[self.action][0].format(**{k: v if v is not None else 0 for k, v in data.items()})
