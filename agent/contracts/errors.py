"""The one error a contract raises: a payload that does not follow its schema."""


class ContractError(ValueError):
    """A payload or manifest does not follow its schema. Reject it; retrying will not help."""
