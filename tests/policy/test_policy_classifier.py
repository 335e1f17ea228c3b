"""The classification table: cells an analyst could write, and the decision the default policy gives."""

from __future__ import annotations

import pytest

from governed_kernel.policy import Classifier, aliases_from_namespace, load_policy
from governed_kernel.resources import policies_dir

POLICY = load_policy(policies_dir() / "pci-dss.yaml")
CLASSIFIER = Classifier(POLICY)

SHELL = "shell-commands"
PROC = "processes-and-native-code"
DYN = "dynamic-code"
READ = "sql-cardholder-read"
CHANGE = "sql-cardholder-change"
UNRES = "sql-unresolved"
NET = "network-egress"
TAMPER = "control-tampering"

# (cell, expected decision, a rule id that must be among the findings or None for no findings)
TABLE: list[tuple[str, str, str | None]] = [
    # --- safe analysis -------------------------------------------------------------------------------
    ("import pandas as pd\ndf = pd.read_csv('tx.csv')\ndf.head()", "allow", None),
    ("import numpy as np\nx = np.linspace(0, 1, 100)\nprint(x.mean())", "allow", None),
    ("df.groupby('merchant')['amount'].sum().plot(kind='bar')", "allow", None),
    ("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()", "allow", None),
    ("total = sum(i * i for i in range(10_000))\ntotal", "allow", None),
    ("with open('report.txt') as fh:\n    lines = fh.readlines()", "allow", None),
    ("import os\npath = os.path.join('data', 'x.csv')\nos.listdir('.')", "allow", None),
    ("import re\npattern = re.compile(r'\\d+')\npattern.findall('a1b22')", "allow", None),
    ("x = eval('1 + 2')", "allow", None),
    ("result = df.eval('a + b')\nsubset = df.query('amount > 100')", "allow", None),
    ("getattr(df, 'shape')\nvalue = getattr(obj, name)", "allow", None),
    ("def f(x):\n    return x % 3\nprint('%d items' % f(10))", "allow", None),
    ("a = 1\nif a != 2:\n    print('differs')", "allow", None),
    ("%matplotlib inline", "allow", None),
    ("%timeit sum(range(100))", "allow", None),
    ("%%time\ntotal = sum(range(10))", "allow", None),
    ("%config InlineBackend.figure_format = 'retina'", "allow", None),
    ("df?", "allow", None),
    ("import json\njson.dumps({'a': 1})", "allow", None),
    ("company = pd.read_sql('SELECT name FROM company', con)", "allow", None),
    ("pd.read_sql('SELECT merchant, SUM(amount) FROM orders GROUP BY merchant', con)", "allow", None),
    ("q = 'SELECT * FROM orders WHERE total > 10'\npd.read_sql(q, con)", "allow", None),
    ("cur.execute('SELECT card_count FROM merchants')", "allow", None),
    ("df.to_sql('daily_summary', con, if_exists='replace')", "allow", None),
    ("cur.execute('INSERT INTO audit_notes (note) VALUES (?)', ('x',))", "allow", None),
    ("%sql SELECT region, count(*) FROM stores GROUP BY region", "allow", None),
    ("conn.execute(f'SELECT * FROM orders WHERE id = {order_id}')", "allow", None),
    ("pd.read_sql('WITH cards AS (SELECT 1 AS n) SELECT n FROM cards', con)", "allow", None),
    ("def broken(:\n    pass", "allow", None),
    ("print('docs at https://example.com/help')", "allow", None),
    ("import sqlite3\ncon = sqlite3.connect('local.db')", "allow", None),
    ("from collections import Counter\nCounter('abc')", "allow", None),
    # --- shell escapes and magics ----------------------------------------------------------------------
    ("!ls -l", "approve", SHELL),
    ("files = !ls data", "approve", SHELL),
    ("!!whoami", "approve", SHELL),
    ("%%bash\necho hello", "approve", SHELL),
    ("%%sh\nls", "approve", SHELL),
    ("%%script bash\necho hi", "approve", SHELL),
    ("%system ls", "approve", SHELL),
    ("%sx ls", "approve", SHELL),
    ("%pip install requests", "approve", SHELL),
    ("get_ipython().system('cat /etc/passwd')", "approve", SHELL),
    ("ip = get_ipython()\nip.getoutput('id')", "approve", SHELL),
    ("%%time\n!ls", "approve", SHELL),
    ("for f in files:\n    !echo {f}", "approve", SHELL),
    ("\n\n!ls", "approve", SHELL),
    # --- processes and native code ----------------------------------------------------------------------
    ("import subprocess\nsubprocess.run(['ls'])", "approve", PROC),
    ("import subprocess as sp\nsp.check_output('id', shell=True)", "approve", PROC),
    ("from subprocess import Popen\nPopen(['ls'])", "approve", PROC),
    ("from subprocess import *\nrun(['ls'])", "approve", PROC),
    ("import os\nos.system('id')", "approve", PROC),
    ("os.popen('id').read()", "approve", PROC),
    ("os.execv('/bin/sh', ['sh'])", "approve", PROC),
    ("os.spawnl(os.P_WAIT, '/bin/ls', 'ls')", "approve", PROC),
    ("os.posix_spawn('/bin/ls', ['ls'], {})", "approve", PROC),
    ("from os import system as s\ns('id')", "approve", PROC),
    ("import pty\npty.spawn('/bin/sh')", "approve", PROC),
    ("import ctypes\nlibc = ctypes.CDLL('libc.so.6')", "approve", PROC),
    ("from cffi import FFI", "approve", PROC),
    ("runner = subprocess.run\nrunner(['ls'])", "approve", PROC),
    ("getattr(os, 'system')('id')", "approve", PROC),
    ("__import__('os').system('id')", "approve", PROC),
    ("import sys\nsys.modules['os'].system('id')", "approve", PROC),
    ("vars(os)['system']('id')", "approve", PROC),
    ("%timeit os.system('true')", "approve", PROC),
    ("exec(\"import os; os.system('id')\")", "approve", PROC),
    ("from concurrent.futures import ProcessPoolExecutor\nProcessPoolExecutor()", "approve", PROC),
    # --- dynamic code ----------------------------------------------------------------------------------
    ("getattr(__import__('o' + 's'), 'sys' + 'tem')('id')", "approve", DYN),
    ("import base64\nexec(base64.b64decode('aW1wb3J0IG9z'))", "approve", DYN),
    ("code = input()\nexec(code)", "approve", DYN),
    ("eval(user_expression)", "approve", DYN),
    ("compile(source, '<x>', 'exec')", "approve", DYN),
    ("import importlib\nimportlib.import_module(name)", "approve", DYN),
    ("mod = __import__(modname)", "approve", DYN),
    ("getattr(os, attr)('id')", "approve", DYN),
    ("os.__dict__['sys' + 'tem']('id')", "approve", DYN),
    ("get_ipython().run_cell(generated)", "approve", DYN),
    ("get_ipython().run_line_magic(magic_name, '')", "approve", DYN),
    ("exec(f'print({x})')", "approve", DYN),
    ("builtins.exec(payload)", "approve", DYN),
    # --- SQL -------------------------------------------------------------------------------------------
    ("pd.read_sql('SELECT * FROM cards', con)", "approve", READ),
    ("pd.read_sql('select pan, expiry from customers', con)", "approve", READ),
    ('pd.read_sql_query("""\n  SELECT c.id, c.card_number\n  FROM customers c\n""", con)', "approve", READ),
    ("pd.read_sql(f'SELECT * FROM cardholders WHERE id = {cid}', con)", "approve", READ),
    ("cur.execute('SELECT * FROM payments.card_vault')", "approve", READ),
    ("q = 'SELECT cvv FROM t'\ncur.execute(q)", "approve", READ),
    ("pd.read_sql_table('cardholder_data', con)", "approve", READ),
    ("pd.read_sql(text('SELECT track2 FROM swipes'), con)", "approve", READ),
    ("spark.sql('SELECT * FROM pan_tokens')", "approve", READ),
    ("%sql SELECT * FROM cards LIMIT 5", "approve", READ),
    ("%%sql\nSELECT pan\nFROM transactions", "approve", READ),
    ("%sql result << SELECT * FROM cardholders", "approve", READ),
    ("cur.execute('INSERT INTO summary SELECT count(*) FROM cards')", "approve", READ),
    ("cur.execute('DELETE FROM cards WHERE id = %s', (1,))", "approve", CHANGE),
    ("cur.execute('DROP TABLE card_archive')", "approve", CHANGE),
    ("cur.execute('TRUNCATE TABLE cardholders')", "approve", CHANGE),
    ("cur.execute('UPDATE customers SET pan = NULL')", "approve", CHANGE),
    ("cur.executescript('ALTER TABLE cards ADD COLUMN note TEXT')", "approve", CHANGE),
    ("con.execute('INSERT INTO cards (pan) VALUES (?)', row)", "approve", CHANGE),
    ("df.to_sql('cards', con, if_exists='append')", "approve", CHANGE),
    ("%%sql\nDROP TABLE pan_archive", "approve", CHANGE),
    ("pd.read_sql(query, con)", "approve", UNRES),
    ("pd.read_sql(f'SELECT * FROM {table}', con)", "approve", UNRES),
    ("cur.execute('SELEC * FORM cards')", "approve", UNRES),
    ("df.to_sql(table_name, con)", "approve", UNRES),
    # --- network egress --------------------------------------------------------------------------------
    ("import requests\nrequests.post('https://example.com', json=payload)", "approve", NET),
    ("import httpx\nhttpx.get(url)", "approve", NET),
    ("from urllib.request import urlopen\nurlopen('http://x')", "approve", NET),
    ("import socket\ns = socket.socket()\ns.connect(('10.0.0.1', 80))", "approve", NET),
    ("import smtplib\nsmtplib.SMTP('mail.example.com')", "approve", NET),
    ("import ftplib\nftplib.FTP('ftp.example.com')", "approve", NET),
    ("import paramiko\nparamiko.SSHClient()", "approve", NET),
    ("import boto3\ns3 = boto3.client('s3')\ns3.upload_file('a.csv', 'bucket', 'a.csv')", "approve", NET),
    ("client.upload_file('a.csv', 'bucket', 'key')", "approve", NET),
    ("df.to_parquet('s3://bucket/cards.parquet')", "approve", NET),
    ("df.to_csv(f'gs://bucket/{name}.csv')", "approve", NET),
    ("import aiohttp\nasync with aiohttp.ClientSession() as s:\n    await s.post(url)", "approve", NET),
    # --- tampering with the controls -------------------------------------------------------------------
    ("get_ipython().kernel.session = None", "deny", TAMPER),
    ("k = get_ipython().kernel\nk.iopub_socket.send(b'x')", "deny", TAMPER),
    ("import sys\nsys.addaudithook(lambda e, a: None)", "deny", TAMPER),
    ("import governed_kernel", "deny", TAMPER),
    ("from governed_kernel.policy import runtime\nruntime._STATE.active = None", "deny", TAMPER),
    ("sys.modules['governed_kernel'].policy", "deny", TAMPER),
    ("get_ipython().input_transformers_cleanup.clear()", "deny", TAMPER),
    ("get_ipython().ast_transformers.append(t)", "deny", TAMPER),
    ("%config GovernedKernel.policy = ''", "deny", TAMPER),
    ("import IPython\nIPython.get_ipython().kernel.shell_stream", "deny", TAMPER),
    ("!ls\nget_ipython().kernel.session.key = b''", "deny", TAMPER),
    # --- evasions found by probing (second round) -------------------------------------------------------
    ("__builtins__['exec'](code)", "approve", DYN),
    ("[exec][0](code)", "approve", DYN),
    ("(lambda: eval)()(text)", "approve", DYN),
    ("{'f': exec}['f'](code)", "approve", DYN),
    ("runner = compile\nrunner(src, 'x', 'exec')", "approve", DYN),
    ("import builtins\nloaders = [builtins.__import__]\nloaders[0](name)", "approve", DYN),
    ("import runpy\nrunpy.run_path('job.py')", "approve", DYN),
    ("import code\ncode.InteractiveConsole().push(line)", "approve", DYN),
    ("import asyncio\nawait asyncio.create_subprocess_shell('id')", "approve", PROC),
    ("from asyncio import create_subprocess_exec as spawn\nawait spawn('id')", "approve", PROC),
    ("import _posixsubprocess", "approve", PROC),
    ("get_ipython().find_line_magic('sx')('id')", "approve", SHELL),
    ("get_ipython().magics_manager.magics['line']['system']('id')", "approve", SHELL),
    ("get_ipython().transform_ast = lambda node: node", "deny", TAMPER),
    ("ip = get_ipython()\nip.events.callbacks['pre_run_cell'].clear()", "deny", TAMPER),
    ("get_ipython().events.callbacks['post_execute'][:] = []", "deny", TAMPER),
    ("import gc\n[o for o in gc.get_objects() if type(o).__name__ == 'Governor']", "deny", TAMPER),
    ("import gc as g\ng.get_referrers(obj)", "deny", TAMPER),
    ("import sys\nm = sys.modules['_posix' + 'subprocess']", "approve", DYN),
    ("import sys\nm = sys.modules.get(name)", "approve", DYN),
    ("import sys\n[m for m in sys.modules.values() if m.__name__.endswith('subprocess')]", "approve", DYN),
    ("import os\nlist(vars(os).values())", "approve", DYN),
    ("import builtins\nf = builtins.__dict__.get('ex' + 'ec')", "approve", DYN),
    ("import operator, os\noperator.attrgetter('sys' + 'tem')(os)('id')", "approve", DYN),
    ("import os\ntype(os).__getattribute__(os, 'sys' + 'tem')('id')", "approve", DYN),
    ("import importlib.util\nspec = importlib.util.spec_from_file_location('m', path)", "approve", DYN),
    ("import importlib, json\nimportlib.reload(json)", "approve", DYN),
    # _posixsubprocess.fork_exec starts a process without any audit event: only static rules see it.
    ("import IPython.utils._process_posix as p\np.subprocess.Popen(['id'])", "approve", PROC),
    ("helper.subprocess._posixsubprocess.fork_exec(*args)", "approve", PROC),
    ("spawn = some_module.fork_exec", "approve", PROC),
    # --- look-alikes of those that stay allowed --------------------------------------------------------
    ("df.subprocess_count.sum()\ndf['subprocess'].mean()", "allow", None),
    ("import sys\nsys.modules.get('pandas') is not None", "allow", None),
    ("import operator\nrows.sort(key=operator.attrgetter('amount'))", "allow", None),
    (
        "class Row:\n    def __getattr__(self, name):\n"
        "        return object.__getattribute__(self, '_data')[name]",
        "allow",
        None,
    ),
    ("import asyncio\nawait asyncio.sleep(0.1)", "allow", None),
    ("import gc\ngc.collect()", "allow", None),
    ("callbacks = {'a': print}\ncallbacks['a']('x')", "allow", None),
    ("x = df['amount'].sum()\nrows = df.loc[df['amount'] > 10, 'id'].tolist()", "allow", None),
    ("get_ipython().display_formatter.formatters['text/html'].for_type(int, str)", "allow", None),
    ("code = 'print(1)'\nprint(code)", "allow", None),
]


def test_table_is_large_enough() -> None:
    assert len(TABLE) >= 80
    assert {expected for _, expected, _ in TABLE} == {"allow", "approve", "deny"}


@pytest.mark.parametrize(("cell", "expected", "rule"), TABLE, ids=[repr(c)[:50] for c, _, _ in TABLE])
def test_decision(cell: str, expected: str, rule: str | None) -> None:
    decision = CLASSIFIER.classify_uncached(cell)
    found = decision.rule_ids
    assert decision.action == expected, (decision.summary(), found)
    if rule is None:
        assert not decision.findings, decision.summary()
    else:
        assert rule in found, decision.summary()
    for finding in decision.findings:
        assert finding.reason and "\n" not in finding.reason
        assert finding.span.line >= 1 and finding.span.column >= 1


def test_spans_point_at_the_call() -> None:
    cell = "import pandas as pd\n\nx = 1\nresult = subprocess.run(['ls'])\n"
    finding = CLASSIFIER.classify(cell).findings[0]
    assert (finding.span.line, finding.span.column) == (4, 10)
    assert finding.reason.startswith("calls subprocess.run")
    assert finding.pci == POLICY.rule(PROC).pci


def test_shell_escape_span_after_ipython_transform() -> None:
    finding = CLASSIFIER.classify("x = 1\n\ny = !ls -la\n").findings[0]
    assert (finding.span.line, finding.span.column) == (3, 5)
    assert "ls -la" in finding.reason


def test_strictest_action_wins_and_every_rule_is_listed() -> None:
    decision = CLASSIFIER.classify("!ls\nimport requests\nrequests.get(u)\nget_ipython().kernel.session")
    assert decision.action == "deny"
    assert {SHELL, NET, TAMPER} <= set(decision.rule_ids)


def test_syntax_error_is_allowed_with_a_note() -> None:
    decision = CLASSIFIER.classify("os.system('id'\n")
    assert decision.action == "allow"
    assert decision.notes and "SyntaxError" in decision.notes[0]


def test_aliases_from_earlier_cells() -> None:
    import os
    import subprocess

    aliases = aliases_from_namespace({"sp": subprocess, "s": os.system, "df": object(), "np_": 3})
    assert aliases["sp"] == "subprocess"
    assert aliases["s"] == "os.system"
    assert CLASSIFIER.classify("sp.run(['ls'])", aliases).action == "approve"
    assert CLASSIFIER.classify("s('id')", aliases).action == "approve"
    assert CLASSIFIER.classify("sp.run(['ls'])").action == "allow"  # without the alias it cannot know


def test_observe_mode_decides_but_does_not_gate() -> None:
    observe = Classifier(load_policy(policies_dir() / "examples" / "observe.yaml"))
    decision = observe.classify("!ls")
    assert decision.action == "approve" and not decision.gated
    assert CLASSIFIER.classify("!ls").gated


def test_strict_policy_denies_changes_and_egress() -> None:
    strict = Classifier(load_policy(policies_dir() / "examples" / "strict.yaml"))
    assert strict.classify("cur.execute('DELETE FROM cards')").action == "deny"
    assert strict.classify("requests.get(u)").action == "deny"
    assert strict.classify("pd.read_sql('SELECT pan FROM t', c)").action == "approve"


def test_decision_json_shape() -> None:
    data = CLASSIFIER.classify("pd.read_sql('SELECT * FROM cards', con)").to_dict()
    assert data["decision"] == "approve"
    assert data["policy_version"] == POLICY.version
    rule = data["rules"][0]
    assert {"id", "action", "reason", "span"} <= rule.keys()
    assert set(rule["span"]) == {"line", "column", "end_line", "end_column"}


@pytest.mark.parametrize(
    ("cell", "typed"),
    [
        ("!ls -la", "!ls -la"),
        ("x = 1\n%time !ls -la", "%time !ls -la"),
        ("note = 'x'\nif note:\n    !echo hi", "!echo hi"),
        ("files = !ls /data", "!ls /data"),
        ("%%bash\nls", "%%bash"),
        ("note = 'café ☕'; import subprocess; subprocess.run(['ls'])", "subprocess.run"),
        ("if True:\n    x = 'é'; import os; os.system('ls')", "os.system"),
        ("import os\nos.system('ls')", "os.system"),
        ("import pandas as pd\npd.read_sql('SELECT 1 FROM cards')", "pd.read_sql('SELECT 1 FROM cards')"),
    ],
)
def test_spans_cover_what_the_analyst_typed(cell: str, typed: str) -> None:
    """Rules read IPython's rewrite of a cell (``!ls`` is ``get_ipython().system('ls')``); spans are
    given back on the cell as typed (columns from 1, end exclusive), for the approver's highlight."""
    finding = CLASSIFIER.classify(cell).findings[0]
    span, lines = finding.span, cell.splitlines()
    assert span.line == span.end_line
    assert lines[span.line - 1][span.column - 1 : span.end_column - 1] == typed
