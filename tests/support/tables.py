"""The rows a page or the console shows, as cell texts: to hold the console and report.html equal."""

from html.parser import HTMLParser

SECTIONS = ("Per board and test set", "Latency (busy pin) and energy per inference, per exit path",
            "Regression rules against baseline")


class HtmlTables(HTMLParser):
    """Each <table> of a page by the heading before it: its header and body rows as cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._heading, self._in_heading, self._rows, self._cell = "", False, None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "h3"):
            self._heading, self._in_heading = "", True
        elif tag == "table":
            self._rows = self.tables.setdefault(self._heading, [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("h2", "h3"):
            self._in_heading = False
        elif tag == "table":
            self._rows = None
        elif tag in ("td", "th") and self._cell is not None:
            self._rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._in_heading:
            self._heading += data
        elif self._cell is not None:
            self._cell += data


def html_table(page: str, title: str) -> list[list[str]]:
    tables = HtmlTables(page).tables
    (heading,) = [h for h in tables if h.startswith(title)]
    return tables[heading]


def console_table(text: str, title: str) -> list[list[str]]:
    """A rich table of console text by its title: header and body rows as cell texts (rules skipped)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 1:]:
        if line[:1] in ("┃", "│"):
            rows.append([cell.strip() for cell in line.strip()[1:-1].split(line[0])])
        elif line[:1] == "└":
            return rows
    return rows
