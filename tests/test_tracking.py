"""study.tracking against a real MLflow (SQLite file): a point's run records the values it was given,
a reopened run resumes after its last logged step."""

import pytest

from study import tracking
from tests.test_study_run import procs  # noqa: F401 - the fixture
from uwm_model import layout


def test_auc_reward_of_a_planted_curve():
    assert layout.auc_reward([(100, 0.0), (200, 0.5), (400, 1.0)]) == pytest.approx((0 * 100 + 0.5 * 100 + 1.0 * 200) / 400)
    assert layout.auc_reward([(50, 1.0), (100, 1.0)]) == 1.0


def test_a_point_run_logs_values_and_a_reopened_run_resumes_after_its_last_step(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = tracking.StudyTracker(uri, "tracked")
    parent = study.open_parent("name: tracked\n", "hash0")
    exp = study.experiment_id()
    point = {"point_id": "p0", "cell": "c0", "stage": "search", "axes": {"lr": 0.1},
             "config": {"rule": "uwm", "hidden": [4], "lr": 0.1, "episodes": 300, "report_every": 100}}
    run = tracking.PointRun(study.client, exp, parent, "tracked", "pack0", point)
    run.log(100, {"eval_reward_mean": 0.25, "episodes": 100.0, "bad": float("nan")})
    run.log(200, {"eval_reward_mean": 0.5, "episodes": 200.0})

    again = tracking.PointRun(study.client, exp, parent, "tracked", "pack0", point)   # a retried attempt
    assert again.ensure() == run.run_id and again.last_step == 200
    again.log(200, {"eval_reward_mean": 99.0, "episodes": 200.0})     # already logged: skipped
    again.log(300, {"eval_reward_mean": 0.75, "episodes": 300.0})
    again.finish(layout.FINISHED, {}, [(300, 0, "eval_reward", 0.5)])

    history = study.client.get_metric_history(run.run_id, "eval_reward_mean")
    assert sorted((m.step, m.value) for m in history) == [(100, 0.25), (200, 0.5), (300, 0.75)]
    data = study.client.get_run(run.run_id).data
    assert "bad" not in data.metrics
    assert data.metrics["eval_reward_mean"] == 0.75   # the runs table's value: the series' latest
    assert data.tags[layout.STATUS] == layout.FINISHED and data.tags[layout.POINT_ID] == "p0"
    assert data.params["lr"] == "0.1" and data.params["cell.lr"] == "0.1"
    text = study.client.download_artifacts(run.run_id, layout.SEED_CURVES, str(tmp_path))
    assert open(text).read().splitlines() == [",".join(layout.SEED_CURVE_COLUMNS), "300,0,eval_reward,0.5"]
    counts = study.close_parent(parent)
    assert counts[layout.FINISHED] == 1 and sum(counts.values()) == 1


@pytest.mark.slow
def test_an_unreachable_server_is_told_apart_from_a_bad_request(tmp_path, monkeypatch):
    """What MLflow raises once its retries run out against a server that is gone counts as an outage (the study
    ends with one line and resume records its end); an error of the request itself does not."""
    import socket

    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Exception) as gone:
        tracking.client(f"http://127.0.0.1:{port}").get_run("0" * 32)
    assert tracking.is_outage(gone.value), repr(gone.value)
    with pytest.raises(MlflowException) as missing:
        tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run("0" * 32)
    assert not tracking.is_outage(missing.value)


class _CutOffProxy:
    """A real HTTP proxy in front of a real MLflow server that, for the paths named, lets the server do the
    request and then sends the client the response's headers but never its body: what a client sees when the
    server dies while answering. MLflow's own retries do not cover it (they retry refused, reset and timed-out
    connections, not a response cut off), and the server has already done the request."""

    def __init__(self, upstream_port: int, cuts: dict[str, int], chunked: frozenset[str] = frozenset()):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.cuts, self.chunked, self.cut = dict(cuts), chunked, []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body, headers)
                response = upstream.getresponse()
                data = response.read()
                endpoint = self.path.split("?")[0].split("/mlflow/")[-1]
                cut = proxy.cuts.get(endpoint, 0) > 0
                chunked = cut and endpoint in proxy.chunked   # cut before its first chunk, not short of a length
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(key, value)
                self.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(data)))))
                self.send_header("Connection", "close")
                self.end_headers()
                if cut:
                    proxy.cuts[endpoint] -= 1
                    proxy.cut.append(endpoint)
                else:
                    self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_responses_cut_off_by_a_dying_server_are_done_once(tmp_path, procs):
    """A tracking server that dies while answering (the request done, the response cut off) is not an
    outage MLflow's retries wait for: each call of a point's run is done again, and the point is still recorded
    once: one run with every parameter, each metric step once, its end. The study's parent run, whose creation
    is cut off first, exists once too."""
    from tests.test_study_failures import _server
    from tests.test_study_run import _healthy, free_port, wait_for

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _server(tmp_path, port)
    procs.remember(server)   # ended with its session's group: the server's job runner and consumers outlive it
    wait_for(lambda: _healthy(uri), 120, "mlflow server", procs, server)
    proxy = _CutOffProxy(port, {"runs/create": 2, "runs/log-batch": 2, "runs/search": 2, "runs/update": 1},
                         chunked=frozenset({"runs/update"}))
    try:
        parent = tracking.StudyTracker(proxy.uri, "cutoff").open_parent("name: cutoff\n", "hash0")   # cut, then found
        study = tracking.StudyTracker(uri, "cutoff")
        exp = study.experiment_id()
        parents = tracking.search_all(study.client, [exp], layout.parent_filter("cutoff"))
        assert [r.info.run_id for r in parents] == [parent]   # one parent run, with its spec
        assert study.client.download_artifacts(parent, layout.SPEC_ARTIFACT, str(tmp_path)).endswith("spec.yaml")
        point = {"point_id": "p0", "cell": "c0", "stage": "search", "axes": {"lr": 0.1},
                 "config": {"rule": "uwm", "hidden": [4], "lr": 0.1, "episodes": 200, "report_every": 100}}
        run = tracking.PointRun(tracking.client(proxy.uri), exp, parent, "cutoff", "pack0", point)
        run.log(100, {"eval_reward_mean": 0.25, "episodes": 100.0})
        run.log(200, {"eval_reward_mean": 0.5, "episodes": 200.0})
        run.finish(layout.FINISHED, {"auc": 0.4}, [])
    finally:
        proxy.close()
    assert sorted(proxy.cut) == ["runs/create", "runs/create", "runs/log-batch", "runs/log-batch", "runs/search",
                                 "runs/search", "runs/update"], proxy.cut

    runs = tracking.search_all(study.client, [exp], layout.point_filter(parent, "p0"))
    assert [r.info.run_id for r in runs] == [run.run_id]   # one run for the point, the one it logged to
    data = study.client.get_run(run.run_id).data
    assert data.params["lr"] == "0.1" and data.params["cell.lr"] == "0.1" and data.params["hidden"] == "[4]"
    history = study.client.get_metric_history(run.run_id, "eval_reward_mean")
    assert sorted((m.step, m.value) for m in history) == [(100, 0.25), (200, 0.5)]
    assert data.metrics["auc"] == 0.4 and data.tags[layout.STATUS] == layout.FINISHED
    assert study.client.get_run(run.run_id).info.status == "FINISHED"
