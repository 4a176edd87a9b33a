"""Who is this: staff and member galleries, the visit window."""
