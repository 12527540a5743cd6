# vspcctl against a live three-node cluster (Redis, HAProxy): cluster
# status and a node killed, consoles of every node with their owner,
# requests about another node's console relayed over the peer link (vm
# show, who, log, disconnect), drain of another node, attach through the
# control socket to a console on another node.

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cluster  # noqa: E402
from harness import wait_for  # noqa: E402
import ctlclient  # noqa: E402
from ctlclient import CtlConn, vspcctl, vspcctl_json  # noqa: E402


def sock(node):
    return os.path.join(node.dir, "control.sock")


class CtlCluster(cluster.ClusterTest):

    def test_status_and_relayed_requests(self):
        n1, n2, n3 = self.cluster.nodes
        s1 = sock(n1)

        def states():
            st = vspcctl_json(s1, "cluster", "status")
            return {n["id"]: n["state"] for n in st["nodes"]}
        wait_for(lambda: states() == {"n1": "active", "n2": "active",
                                      "n3": "active"}, 10,
                 "three active nodes")
        st = vspcctl_json(s1, "cluster", "status")
        self.assertEqual(st["store"]["kind"], "redis")
        self.assertTrue(st["store"]["connected"])
        self.assertTrue(st["store"]["master"].startswith("127.0.0.1:"))
        wait_for(lambda: all(n["link"] in ("self", "up") for n in
                             vspcctl_json(s1, "cluster", "status")
                             ["nodes"]), 10, "peer links up")
        human = vspcctl(s1, "cluster", "status").stdout.decode()
        self.assertRegex(human, r"(?m)^n2\s+127\.0\.0\.1:\d+\s")

        # A console on each of n2 and n3; people on n2's.
        v2 = self.fakevm(n2, name="vm-two")
        v3 = self.fakevm(n3, name="vm-three")
        v2.send(b"two says hello\r\n")
        self.wait_listed_everywhere("vm-two")
        self.wait_listed_everywhere("vm-three")
        p = self.console(n2)
        p.attach("vm-two")
        lst = vspcctl_json(s1, "vm", "list")
        owners = {c["name"]: c["owner"] for c in lst["consoles"]}
        self.assertEqual(owners, {"vm-two": "n2", "vm-three": "n3"})
        wait_for(lambda: vspcctl_json(s1, "cluster", "status")["totals"]
                 ["consoles"] == 2, 5, "node records to count consoles")

        # Relayed to n2: vm show, who, log.
        show = vspcctl_json(s1, "vm", "show", "vm-two")
        self.assertEqual(show["answered_by"], "n2")
        self.assertEqual(show["owner"], "n2")
        self.assertEqual(len(show["persons"]), 1)
        who = vspcctl_json(s1, "who", "vm-two")
        self.assertEqual(who["node"], "n2")
        self.assertEqual(who["people"][0]["id"].split(":")[0], "n2")
        wait_for(lambda: b"two says hello" in vspcctl(
            s1, "log", "vm-two").stdout, 5, "n2's log through n1")

        # Attach through n1's control socket to n2's console.
        c = CtlConn(s1)
        r = c.request(ctlclient.ATTACH, target="vm-two",
                      mode=ctlclient.MODE_SPY)
        self.assertTrue(r.ok, r.error)
        c.read_data_until(b"two says hello")
        v2.send(b"live output\r\n")
        c.read_data_until(b"live output")
        c.send(ctlclient.ESCAPE, arg="force")
        time.sleep(0.3)
        c.send(ctlclient.INPUT, data=b"from n1")
        self.assertEqual(v2.wait_data(7), b"from n1")
        c.close()

        # Disconnect n2's person from n1.
        pid = vspcctl_json(s1, "who", "vm-two")["people"]
        console_person = [x for x in pid if x["addr"].startswith("127.")]
        vspcctl(s1, "disconnect", console_person[0]["id"])
        p.read_until(b"disconnected by an operator")

        # Drain n3 from n1: the state shows; n3 refuses new people.
        vspcctl(s1, "node", "drain", "n3")
        wait_for(lambda: states()["n3"] == "draining", 5, "n3 draining")
        q = self.console(n3)
        q.read_until(b"draining")
        vspcctl(s1, "node", "undrain", "n3")
        wait_for(lambda: states()["n3"] == "active", 5, "n3 active")
        self.console(n3).attach("vm-three")
        v3.close()

        # n3 killed: down within three heartbeats (1 s each), plus margin.
        n3.kill9()
        wait_for(lambda: states().get("n3") == "down", 4.5, "n3 down")
        self.assertEqual(states()["n2"], "active")


if __name__ == "__main__":
    unittest.main()
