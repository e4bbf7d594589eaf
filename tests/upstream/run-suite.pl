#!/usr/bin/perl
# Run upstream memcached's t/ suite against one built variant and report
# counts in a form scripts/check adds up.
#
# Usage (from the variant's build directory, where memcached-debug is):
#     run-suite.pl SRCDIR RESULTFILE
# Prints prove-style progress, then "upstream t/: N tests, N failed"; writes
# "PASSED FAILED" to RESULTFILE. A test file that dies or breaks its plan
# counts as one more failure, so a crash can never look like a pass.
use strict;
use warnings;
use TAP::Harness;

my ($srcdir, $resultfile) = @ARGV;
die "usage: $0 SRCDIR RESULTFILE\n" unless defined $resultfile;

my @tests = sort glob("$srcdir/t/*.t");
die "no tests found in $srcdir/t\n" unless @tests;

my $harness = TAP::Harness->new({ verbosity => 0, lib => ["$srcdir/t/lib"] });
my $aggregate = $harness->runtests(@tests);

my $failed = scalar $aggregate->failed;
my $broken = 0;
for my $parser ($aggregate->parsers) {
    $broken++ if $parser->has_problems && !$parser->failed;
}
my $passed = scalar $aggregate->passed;
$failed += $broken;

print "upstream t/: ", $passed + $failed, " tests, $failed failed\n";
open(my $out, '>', $resultfile) or die "$resultfile: $!\n";
print $out "$passed $failed\n";
close($out);
exit($failed ? 1 : 0);
