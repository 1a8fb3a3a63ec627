"""Saying what happens: a line when the tracking server stops answering (with how long the trials wait) and when
it answers again, a line when a node is lost or joins (with the trials the cluster now fits), Ray's tracebacks
in a log file instead of the terminal, and every node a point trained on in `uwm-study status`."""

import io
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from study import runner, tracking
from uwm_model import layout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


def test_the_retry_window_follows_mlflows_own_settings(monkeypatch):
    for name, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "3",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}.items():
        monkeypatch.setenv(name, value)
    assert tracking.retry_window_s() == pytest.approx(6 + 12 + 24)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")   # urllib3 caps each wait at 120 s
    assert tracking.retry_window_s() == pytest.approx(6 + 12 + 24 + 48 + 96 + 120 + 120 + 120)


def test_a_line_when_tracking_stops_answering_and_when_it_answers_again(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    watch = tracking.TrackingWatch(uri, every=10)
    assert watch.poll(now=100.0) == (f"tracking: the MLflow server at {uri} does not answer; the trials wait for it "
                                     "(MLflow's retries, about 42 s), then the packs that were logging fail and Ray "
                                     "Tune retries them from their checkpoints")
    assert watch.poll(now=105.0) is None and watch.poll(now=111.0) is None   # still down: said once
    server = ThreadingHTTPServer(("127.0.0.1", port), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert watch.poll(now=115.0) is None   # looked at no more often than every 10 s
        assert watch.poll(now=131.0) == f"tracking: the MLflow server at {uri} answers again after 31 s"
        assert watch.poll(now=150.0) is None
    finally:
        server.shutdown()
        server.server_close()
    assert tracking.TrackingWatch("sqlite:////tmp/x.db").poll() is None   # a file store has no outage


def _node(ip, cpus, gpus=0):
    return {"ip": ip, "resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_a_line_when_a_node_is_lost_or_joins_with_what_the_cluster_now_fits():
    before = {"a" * 40: _node("10.0.0.1", 4), "b" * 40: _node("10.0.0.2", 2)}
    after = {"a" * 40: _node("10.0.0.1", 4)}
    assert runner.node_changes(before, before, 1, 0) == []
    assert runner.node_changes(before, after, 1, 0) == [
        "node bbbbbbbb at 10.0.0.2 lost: its trials are retried from their checkpoints on the nodes left; the cluster "
        "now fits 4 trials at once (was 6)"]
    assert runner.node_changes(after, before, 2, 0) == [
        "node bbbbbbbb at 10.0.0.2 joined: the cluster now fits 3 trials at once (was 2)"]
    # a trial lives on one node: GPUs and CPUs of different nodes do not add up
    assert runner.trials_that_fit({"x": _node("1", 8, 1), "y": _node("2", 1, 2)}, 1.5, 0.5) == 2 + 0
    assert runner.trials_that_fit({"x": _node("1", 3)}, 1.5, 0) == 2


def test_tracebacks_go_to_the_log_file_not_the_terminal(tmp_path):
    console = io.StringIO()
    handler = logging.StreamHandler(console)
    ray_logger = logging.getLogger("ray")
    ray_logger.addHandler(handler)
    divert = runner.ErrorLog(str(tmp_path / runner.ERRORS))
    try:
        assert handler in divert.handlers()
        handler.addFilter(divert)
        log = logging.getLogger("ray.tune.execution.tune_controller")
        try:
            raise RuntimeError("worker died")
        except RuntimeError as err:
            log.error("Trial task failed for trial pack-0", exc_info=err)
        log.error("Could not delete checkpoint:\nTraceback (most recent call last):\n  File ...\nFileNotFoundError")
        log.warning("a plain warning")
    finally:
        ray_logger.removeHandler(handler)
    assert console.getvalue() == "a plain warning\n"
    text = (tmp_path / runner.ERRORS).read_text()
    assert "Trial task failed for trial pack-0" in text and "RuntimeError: worker died" in text
    assert "Could not delete checkpoint" in text


@pytest.mark.slow
def test_status_counts_a_point_on_every_node_it_trained_on(tmp_path):
    """A point retried on another node (its first node lost) keeps both in uwm.nodes; status counts it on each."""
    study = tracking.StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "moved")
    parent = study.open_parent("name: moved\n", "h")
    exp = study.experiment_id()
    point = {"point_id": "p0", "cell": "c0", "stage": "search", "axes": {},
             "config": {"rule": "uwm", "hidden": [4], "lr": 0.1, "episodes": 200, "report_every": 100}}

    def where(node, ip):
        return {layout.NODE: node * 40, layout.NODE_IP: ip, layout.HOST: "h", layout.DEVICE: "cpu"}

    first = tracking.PointRun(study.client, exp, parent, "moved", "pack0", point, where("a", "10.0.0.1"))
    first.log(100, {"episodes": 100.0})
    again = tracking.PointRun(study.client, exp, parent, "moved", "pack0", point, where("b", "10.0.0.2"))
    again.log(200, {"episodes": 200.0})
    same = tracking.PointRun(study.client, exp, parent, "moved", "pack0", point, where("b", "10.0.0.2"))
    assert same.ensure() == first.run_id
    other = tracking.PointRun(study.client, exp, parent, "moved", "pack0", {**point, "point_id": "p1"},
                              where("b", "10.0.0.2"))
    other.ensure()
    runs = study.children(parent)
    tags = study.client.get_run(first.run_id).data.tags
    assert tags[layout.NODES] == "aaaaaaaa at 10.0.0.1, bbbbbbbb at 10.0.0.2" and tags[layout.NODE] == "b" * 40
    assert runner.points_by_node(runs) == {"aaaaaaaa at 10.0.0.1": 1, "bbbbbbbb at 10.0.0.2": 2}
