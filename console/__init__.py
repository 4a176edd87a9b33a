"""The guide console: arrival pop-ups and today's counts in the browser."""
