"""Mail requests on the Kafka topic ``CITYSENSE_CITIZEN_MAIL_TOPIC``: the API asks the notifier to send an email.

The API never sends email itself: it stores the subscription, then produces a request keyed by the subscription
id; the notifier consumes it, reads the subscription (address, language) from the store and sends. The message
carries no address, so the topic holds no personal data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MailType = Literal["confirm"]


class MailRequestError(ValueError):
    pass


class MailRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: MailType = Field(description="confirm: the double opt-in email with the signed confirmation link")
    subscription_id: str = Field(min_length=1, max_length=128)

    @property
    def key(self) -> bytes:
        """Kafka key: requests for one subscription stay in order on one partition."""
        return self.subscription_id.encode()

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, value: bytes | str) -> MailRequest:
        try:
            return cls.model_validate_json(value)
        except ValidationError as exc:
            raise MailRequestError(f"not a citizen mail request: {exc.errors()[0]['msg']}") from None
