"""cloudinit-azure kvp: the Hyper-V KVP pool's records, the provisioning report decoded."""

from __future__ import annotations

import json


def test_kvp_command_decodes_the_provisioning_report(tmp_path, capsys):
    from cloudinit_azure import kvp, report
    from cloudinit_azure.__main__ import main

    pool = tmp_path / ".kvp_pool_1"
    error = report.OvfNotWellFormedError(error="bad | xml", line=3)
    text = report.Report.from_error(error, vm_id="v1").encode()
    kvp.append(pool, [("CLOUD_INIT_AZURE_media", "ok 0.01 s"), (kvp.REPORT_KEY, text)])
    assert main(["kvp", "--pool", str(pool)]) == 0
    out = capsys.readouterr().out
    assert "CLOUD_INIT_AZURE_media: ok 0.01 s" in out
    assert "    reason: ovf-env.xml is not well-formed XML\n" in out
    assert "    error: bad | xml\n" in out and "    line: 3\n" in out
    assert main(["kvp", "--pool", str(pool), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["decoded"]["vm_id"] == "v1" and "decoded" not in rows[0]
    assert main(["kvp", "--pool", str(tmp_path / "none")]) == 2
    assert "no KVP pool at" in capsys.readouterr().err

