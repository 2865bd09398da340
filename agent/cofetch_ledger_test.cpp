// The piece rules of a co-fetch (agent/cofetch_ledger.h): claims, hashes,
// disputes and bans, without a network.
#include "agent/cofetch_ledger.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

using dopt::agent::CoFetchLedger;

namespace {

// 8 pieces; this agent (node 20) fetches 4..7; the split is nodes 10 and 20.
CoFetchLedger ledger() { return CoFetchLedger(8, 4, 8, {10, 20}); }

std::string sha(char c) { return std::string(20, c); }

}  // namespace

TEST_CASE("co-fetch claims count only from the split, never for this agent's range, once per piece",
          "[agent][cofetch]") {
    CoFetchLedger l = ledger();
    CHECK_FALSE(l.claim(99, 0, 1000));  // not in the split
    CHECK(l.claimed_ms(0) == 0);
    CHECK_FALSE(l.claim(10, 5, 1000));  // this agent's range
    CHECK(l.claimed_ms(5) == 0);
    CHECK(l.claim(10, 0, 1000));
    CHECK(l.claimed_ms(0) == 1000);
    CHECK_FALSE(l.claim(10, 0, 5000));  // renewed: the first stands
    CHECK(l.claimed_ms(0) == 1000);
    CHECK_FALSE(l.claim(10, 8, 1000));  // past the end
    CHECK_FALSE(l.claim(10, -1, 1000));
}

TEST_CASE("another agent's hash of a piece of this agent's range is only compared, never taken",
          "[agent][cofetch]") {
    CoFetchLedger l = ledger();
    // A liar (10.0.0.1) sends a hash for every piece at once.
    for (int p = 0; p < 8; ++p) l.hash("10.0.0.1", p, sha('L'));
    CHECK(l.known_count() == 4);  // pieces 0..3 only
    for (int p = 4; p < 8; ++p) CHECK_FALSE(l.known(p));
    CHECK_FALSE(l.all_known());
    CHECK_FALSE(l.range_done());
    // This agent fetches piece 4: the liar's differs: banned, and the
    // hashes it gave (0..3) are forgotten.
    CHECK(l.fetched_here(4, sha('a')) == std::vector<std::string>{"10.0.0.1"});
    CHECK(l.known_count() == 1);
    for (int p = 0; p < 4; ++p) CHECK_FALSE(l.known(p));
    // Heard no more.
    CHECK_FALSE(l.hash("10.0.0.1", 0, sha('L')).taken);
    CHECK_FALSE(l.known(0));
    for (int p = 5; p < 8; ++p) CHECK(l.fetched_here(p, sha('a')).empty());
    CHECK(l.range_done());
    CHECK(l.fetched_pieces() == std::vector<bool>{false, false, false, false, true, true, true, true});
}

TEST_CASE("a hash that contradicts this agent's own fetch bans its sender", "[agent][cofetch]") {
    CoFetchLedger l = ledger();
    l.hash("10.0.0.2", 0, sha('b'));
    l.fetched_here(4, sha('a'));
    const auto same = l.hash("10.0.0.3", 4, sha('a'));
    CHECK(same.banned.empty());
    const auto other = l.hash("10.0.0.4", 4, sha('x'));
    CHECK(other.banned == std::vector<std::string>{"10.0.0.4"});
    CHECK(l.hashes()[4] == sha('a'));  // this agent's own stays
    CHECK(l.known(0));                 // another's, untouched
    // A hash taken from another agent that this agent's own fetch of the
    // piece (work stealing) contradicts: banned, and this agent's stays.
    CHECK(l.fetched_here(0, sha('c')) == std::vector<std::string>{"10.0.0.2"});
    CHECK(l.hashes()[0] == sha('c'));
}

TEST_CASE("one sender's two hashes of a piece ban it; its other hashes are forgotten", "[agent][cofetch]") {
    CoFetchLedger l = ledger();
    CHECK(l.hash("10.0.0.1", 0, sha('a')).taken);
    CHECK(l.hash("10.0.0.1", 1, sha('b')).taken);
    CHECK(l.hash("10.0.0.2", 2, sha('c')).taken);
    CHECK(l.hash("10.0.0.1", 0, sha('a')).banned.empty());  // said again: fine
    const auto twice = l.hash("10.0.0.1", 0, sha('z'));
    CHECK(twice.banned == std::vector<std::string>{"10.0.0.1"});
    CHECK_FALSE(l.known(0));
    CHECK_FALSE(l.known(1));
    CHECK(l.known(2));
    CHECK(l.known_count() == 1);
    // Its hash of a piece of this agent's range, twice, too.
    CoFetchLedger m = ledger();
    m.hash("10.0.0.5", 6, sha('a'));
    CHECK(m.hash("10.0.0.5", 6, sha('b')).banned == std::vector<std::string>{"10.0.0.5"});
}

TEST_CASE("two others that disagree on a piece make this agent fetch it, then the liar is banned",
          "[agent][cofetch]") {
    CoFetchLedger l = ledger();
    CHECK(l.hash("10.0.0.1", 1, sha('t')).taken);
    const auto v = l.hash("10.0.0.2", 1, sha('f'));
    CHECK(v.disputed);
    CHECK(v.banned.empty());
    CHECK_FALSE(l.known(1));
    CHECK(l.fetched_here_anyway(1));
    // A third hash of it is not taken, nor a claim on it.
    CHECK_FALSE(l.hash("10.0.0.3", 1, sha('t')).taken);
    CHECK_FALSE(l.known(1));
    CHECK_FALSE(l.claim(10, 1, 1000));
    // Fetched here: the one that lied is banned, the others are not.
    CHECK(l.fetched_here(1, sha('t')) == std::vector<std::string>{"10.0.0.2"});
    CHECK(l.known(1));
}

TEST_CASE("at most a few senders' hashes are kept per piece; liars are found from them",
          "[agent][cofetch]") {
    CoFetchLedger l(2, 1, 2, {1, 2});
    for (std::size_t i = 0; i < CoFetchLedger::kMaxSendersPerPiece; ++i)
        l.hash("10.0.1." + std::to_string(i), 0, sha('t'));
    const auto extra = l.hash("10.0.1.99", 0, sha('f'));  // one more: not heard
    CHECK_FALSE(extra.disputed);
    CHECK(l.claims().size() == CoFetchLedger::kMaxSendersPerPiece);
    l.hash("10.0.0.9", 1, sha('f'));  // this agent's range: kept to compare
    const auto claims = l.claims();
    CHECK(claims.size() == CoFetchLedger::kMaxSendersPerPiece + 1);
    CHECK(CoFetchLedger::liars(claims, {sha('t'), sha('u')}) == std::set<std::string>{"10.0.0.9"});
    CHECK(CoFetchLedger::liars(claims, {sha('x'), sha('f')}).size() == CoFetchLedger::kMaxSendersPerPiece);
    // Bad input is ignored.
    CHECK_FALSE(l.hash("10.0.0.8", 2, sha('t')).taken);
    CHECK_FALSE(l.hash("10.0.0.8", 0, "short").taken);
    CHECK_FALSE(l.hash("", 0, sha('t')).taken);
}

TEST_CASE("a new split moves this agent's range: others' hashes of it are dropped, of the old one taken",
          "[agent][cofetch]") {
    CoFetchLedger l = ledger();  // range 4..7 of split {10, 20}
    l.hash("10.0.0.1", 1, sha('b'));  // taken
    l.hash("10.0.0.1", 5, sha('f'));  // kept to compare
    l.hash("10.0.0.2", 6, sha('g'));
    l.hash("10.0.0.3", 6, sha('G'));  // two disagree on 6
    l.fetched_here(7, sha('h'));
    CHECK(l.claim(10, 0, 1000));
    // Now the split is {5, 10, 20}, and this agent fetches pieces 0..2.
    l.replan(0, 3, {5, 10, 20});
    CHECK(l.in_range(1));
    CHECK_FALSE(l.known(1));           // another's hash of the new range: not taken
    CHECK(l.claimed_ms(0) == 0);       // nor a claim on it
    CHECK(l.known(5));                 // left the range, the others agree: taken
    CHECK(l.hashes()[5] == sha('f'));
    CHECK_FALSE(l.known(6));           // left the range, disputed: fetched here
    CHECK(l.fetched_here_anyway(6));
    CHECK(l.known(7));                 // fetched here: stays
    CHECK(l.known_count() == 2);
    CHECK_FALSE(l.claim(99, 5, 1000));  // the split is the new one
    CHECK(l.claim(5, 4, 1000));
}
