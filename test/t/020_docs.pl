# The documentation says what is installed, and nothing points nowhere:
#
# - every relative link of every Markdown file resolves to a file of the
#   repository, and every #anchor to a heading of its target (GitHub's
#   slugs);
# - nothing refers to files outside the repository;
# - every public function, view and type of the extension has its section
#   in docs/sql-reference.md, quoting its COMMENT ON; a function's
#   signature there has the installed argument names, types, defaults and
#   result, and a view's table names every column;
# - the README's example and the SQL reference's complete example run as
#   written, with the results they show.
use strict;
use warnings;
use File::Find;
use File::Spec;
use Cwd qw(abs_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ClusterTest;

my $root = abs_path('.');

# ---------------------------------------------------------------- links

my @markdown;
find(
	{
		wanted => sub {
			if (-d $_ && /^(\.git|node_modules|out|tmp_check)$/)
			{
				$File::Find::prune = 1;
				return;
			}
			push @markdown, $File::Find::name if -f $_ && /\.md$/;
		},
		no_chdir => 0
	},
	$root);
@markdown = sort @markdown;
ok(scalar(@markdown) >= 12, scalar(@markdown) . ' Markdown files');

# GitHub's heading anchors: lower case, punctuation but - and _ dropped,
# spaces to hyphens, repeats numbered
sub anchors
{
	my ($file) = @_;
	my (%seen, %anchors);
	my $fence = 0;
	for my $line (split /\n/, slurp_file($file))
	{
		$fence = !$fence if $line =~ /^\s*(```|~~~)/;
		next if $fence || $line !~ /^#{1,6}\s+(.*?)\s*#*\s*$/;
		my $slug = lc $1;
		$slug =~ s/\[([^\]]*)\]\([^)]*\)/$1/g;
		$slug =~ s/[^\w\- ]//g;
		$slug =~ s/ /-/g;
		my $n = $seen{$slug}++;
		$anchors{ $n ? "$slug-$n" : $slug } = 1;
	}
	return \%anchors;
}

my %anchor_cache;
my @bad;
for my $file (@markdown)
{
	my $text = slurp_file($file);
	$text =~ s/^\s*```.*?^\s*```//msg;    # code blocks hold no links
	$text =~ s/`[^`\n]*`//g;               # nor does inline code
	my ($vol, $dir) = File::Spec->splitpath($file);
	while ($text =~ /\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)
	{
		my $link = $1;
		next if $link =~ m{^(https?|mailto):};
		my ($path, $anchor) = split /#/, $link, 2;
		my $target = $path eq '' ? $file : abs_path(File::Spec->catfile($dir, $path));
		my $where = File::Spec->abs2rel($file, $root) . ": ($link)";
		if (!defined $target || !-e $target)
		{
			push @bad, "$where: no such file";
			next;
		}
		if (index($target, "$root/") != 0 && $target ne $root)
		{
			push @bad, "$where: outside the repository";
			next;
		}
		next unless defined $anchor && $anchor ne '';
		if ($target !~ /\.md$/)
		{
			push @bad, "$where: an anchor in a file that is not Markdown";
			next;
		}
		$anchor_cache{$target} //= anchors($target);
		push @bad, "$where: no heading for #$anchor" unless $anchor_cache{$target}{$anchor};
	}
}
is(scalar(@bad), 0, 'every relative link and anchor resolves inside the repository')
  or diag(join("\n", @bad));

# nothing names a file outside the repository
my @outside;
find(
	{
		wanted => sub {
			if (-d $_ && /^(\.git|node_modules|out|tmp_check)$/)
			{
				$File::Find::prune = 1;
				return;
			}
			return unless -f $_ && /\.(md|c|h|sql|pl|pm|js|mjs|py|sh|yaml|json)$|^(Makefile|run|setup|demo)$/;
			my $text = slurp_file($_);
			push @outside, File::Spec->abs2rel($File::Find::name, $root)
			  if $text =~ m{DESIGN\.md|\.\./shared/};
		},
	},
	$root);
is(scalar(@outside), 0, 'no file refers to the design notes outside the repository')
  or diag("@outside");

# ---------------------------------------------------------------- SQL reference

my $node = cluster_node('docs', conf => "cluster.database = ''\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cluster');

# the sections of docs/sql-reference.md, by object name
my %section;
{
	my $name;
	for my $line (split /\n/, slurp_file("$root/docs/sql-reference.md"))
	{
		if ($line =~ /^#{2,3} /)
		{
			$name = $line =~ /^### `cluster\.(\w+)`$/ ? $1 : undef;
			push @bad, "two sections for cluster.$name" if defined $name && exists $section{$name};
			$section{$name} = '' if defined $name;
			next;
		}
		$section{$name} .= "$line\n" if defined $name;
	}
}

# the comment quoted in a section: its first block quote, lines joined
sub quoted
{
	my ($text) = @_;
	my @q = ($text =~ /^> ?(.*)$/mg);
	return join(' ', @q);
}

# "int" and "timestamptz" read better; the catalog spells them out
sub canonical_type
{
	my ($t) = @_;
	$t =~ s/\bint\b/integer/g;
	$t =~ s/\btimestamptz\b/timestamp with time zone/g;
	$t =~ s/\s+/ /g;
	return $t;
}

# split an argument list at the commas outside quotes and parentheses
sub split_args
{
	my ($list) = @_;
	my (@args, $cur, $depth, $quote) = ((), '', 0, 0);
	for my $c (split //, $list)
	{
		$quote = !$quote if $c eq "'";
		$depth++ if !$quote && $c eq '(';
		$depth-- if !$quote && $c eq ')';
		if ($c eq ',' && !$quote && $depth == 0)
		{
			push @args, $cur;
			$cur = '';
			next;
		}
		$cur .= $c;
	}
	push @args, $cur if $cur =~ /\S/;
	s/^\s+|\s+$//g for @args;
	return @args;
}

my @problems;

# the section of cluster.<name>, once checked that it quotes "comment"
sub section_quoting
{
	my ($name, $comment) = @_;
	my $text = $section{$name};
	if (!defined $text)
	{
		push @problems, "cluster.$name has no section";
		return undef;
	}
	push @problems, "cluster.$name: the quote is not its comment\n  quote:   " . quoted($text) . "\n  comment: $comment"
	  unless quoted($text) eq $comment;
	return $text;
}
my $functions = $node->safe_psql('postgres', q{
	SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
		   coalesce(obj_description(p.oid, 'pg_proc'), '')
	  FROM pg_proc p
	 WHERE p.pronamespace = 'cluster'::regnamespace AND p.proname !~ '^_'
	 ORDER BY 1});
my $n_functions = 0;
for my $row (split /\n/, $functions)
{
	my ($name, $args, $result, $comment) = split /\|/, $row, 4;
	$n_functions++;
	my $text = section_quoting($name, $comment);
	next unless defined $text;
	my ($doc_args, $doc_result) = $text =~ /^cluster\.\Q$name\E\((.*)\) → (.+)$/m;
	if (!defined $doc_args)
	{
		push @problems, "cluster.$name: no signature line";
		next;
	}
	push @problems, "cluster.$name: returns $result, documented as $doc_result"
	  unless canonical_type($doc_result) eq canonical_type($result);
	my @have = split_args($args);
	my @doc = split_args($doc_args);
	if (@have != @doc)
	{
		push @problems, "cluster.$name: " . scalar(@doc) . " arguments documented, " . scalar(@have) . " installed";
		next;
	}
	for my $i (0 .. $#have)
	{
		my ($h_decl, $h_default) = split / DEFAULT /, $have[$i], 2;
		my ($d_decl, $d_default) = split / DEFAULT /, $doc[$i], 2;
		push @problems, "cluster.$name: argument '$d_decl' is '$h_decl'"
		  unless canonical_type($d_decl) eq canonical_type($h_decl);
		if (defined($h_default) != defined($d_default))
		{
			push @problems, "cluster.$name: argument '$d_decl' has a default in one place only";
			next;
		}
		next unless defined $h_default;
		my ($type) = $h_decl =~ /^\S+ (.*)$/;
		my $same = $node->safe_psql('postgres',
			"SELECT ($d_default)::$type IS NOT DISTINCT FROM ($h_default)::$type");
		push @problems, "cluster.$name: default of '$d_decl' is $h_default, documented as $d_default"
		  unless $same eq 't';
	}
}
ok($n_functions >= 36, "$n_functions public functions");

my $relations = $node->safe_psql('postgres', q{
	SELECT c.relname, coalesce(obj_description(c.oid, 'pg_class'), obj_description(c.reltype, 'pg_type'), ''),
		   string_agg(a.attname, ',' ORDER BY a.attnum)
	  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE c.relnamespace = 'cluster'::regnamespace AND c.relname !~ '^_' AND c.relkind IN ('v', 'c')
	 GROUP BY c.relname, c.oid, c.reltype ORDER BY 1});
my $n_relations = 0;
for my $row (split /\n/, $relations)
{
	my ($name, $comment, $columns) = split /\|/, $row, 3;
	$n_relations++;
	my $text = section_quoting($name, $comment);
	next unless defined $text;
	my %named;
	for my $line (grep { /^\|/ } split /\n/, $text)
	{
		my ($first) = $line =~ /^\|([^|]*)\|/;
		$named{$_} = 1 for $first =~ /`(\w+)`/g;
	}
	for my $column (split /,/, $columns)
	{
		push @problems, "cluster.$name: column $column is not in its table" unless $named{$column};
	}
}
ok($n_relations >= 9, "$n_relations public views and types");

# sections of tables quote their comments too
for my $name (sort keys %section)
{
	next if grep { /^\Q$name\E\|/ } split(/\n/, $functions . "\n" . $relations);
	my $comment = $node->safe_psql('postgres',
		"SELECT coalesce(obj_description(to_regclass('cluster.$name'), 'pg_class'), '<none>')");
	section_quoting($name, $comment);
}
is(scalar(@problems) + scalar(@bad), 0, 'docs/sql-reference.md matches the installed extension')
  or diag(join("\n", @problems, @bad));

# ---------------------------------------------------------------- the README's example

my ($example) = slurp_file("$root/README.md") =~ /^```sql\n(CREATE EXTENSION cluster;.*?)^```/ms;
ok(defined $example, "the README has an example starting with CREATE EXTENSION");
$node->safe_psql('postgres', 'CREATE DATABASE readme');
my ($ret, $out, $err) = $node->psql('readme', $example, on_error_stop => 1);
is($ret, 0, 'the README example runs as written') or diag($err);
ok(defined poll_until_in($node, 'readme', 'SELECT customer FROM mails', 'alice'),
	'and its event reaches the handler function');
is($node->safe_psql('readme', "SELECT processed || ' ' || (last_error IS NULL) FROM cluster.handlers"), '1 true',
	'the handler shows it processed');

# the SQL reference's complete example, and the results it shows
my ($complete) = slurp_file("$root/docs/sql-reference.md") =~ /^## A complete example\n.*?^```sql\n(.*?)^```/ms;
ok(defined $complete, 'the SQL reference has a complete example');
$node->safe_psql('postgres', 'CREATE DATABASE reference');
($ret, $out, $err) = $node->psql('reference', $complete, on_error_stop => 1);
is($ret, 0, 'the complete example runs as written') or diag($err);
ok(defined poll_until_in($node, 'reference', "SELECT string_agg(event_id || ' ' || customer, ', ' ORDER BY event_id) FROM mails",
		'1 alice, 2 bob'), 'its mails are as shown');
is($node->safe_psql('reference', "SELECT cluster.handler_state('mailer') = '{\"last_order\": {\"bob\": \"2\", \"alice\": \"1\"}}'"),
	't', 'and so is its state');

$node->stop;
done_testing();
