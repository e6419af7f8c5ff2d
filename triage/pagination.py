"""Page-number pagination whose page parameter is parsed strictly (issue 16, item 5).

DRF answers a page it cannot parse with 404 "Invalid page."; a malformed query parameter is a bad
request, so here it is a 400 naming ``page``. A number past the last page stays a 404 (the page
does not exist). ``str.isdigit()`` is true for ``²`` and ``٣``: only ASCII digits count.
"""

from __future__ import annotations

from rest_framework import exceptions, pagination


class PageNumberPagination(pagination.PageNumberPagination):
    def get_page_number(self, request, paginator):
        value = request.query_params.get(self.page_query_param) or 1
        if value in self.last_page_strings:
            return value
        text = str(value)
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            raise exceptions.ValidationError({"page": ["Must be a whole number from 1 (ASCII digits)."]})
        return text
