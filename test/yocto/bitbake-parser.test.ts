// biome-ignore-all lint/suspicious/noTemplateCurlyInString: BitBake's ${VAR} expansions, written in plain strings
// The strict BitBake parser and evaluator the layer tests rely on: what it
// accepts means what BitBake makes of it, and what it refuses names the line.
import { describe, expect, it } from 'vitest';
import { BitbakeData, BitbakeSyntaxError, parseBitbake, uriList } from './bitbake.js';

function evaluate(text: string, initial: Record<string, string> = {}): BitbakeData {
  const data = new BitbakeData(initial);
  data.apply(parseBitbake(text, 'test.bb'), 'test.bb');
  return data;
}

function refusal(text: string): BitbakeSyntaxError {
  try {
    parseBitbake(text, 'test.bb');
  } catch (err) {
    if (err instanceof BitbakeSyntaxError) return err;
    throw err;
  }
  throw new Error(`accepted: ${text}`);
}

describe('BitBake parser', () => {
  it('reads every accepted statement kind', () => {
    const statements = parseBitbake(
      [
        '# a comment',
        'A = "1"',
        "B ?= 'two words'",
        'C ??= "weak"',
        'D := "${A}"',
        'E += "x"',
        'E =+ "y"',
        'E .= "z"',
        'E =. "w"',
        'SRC_URI[sha256sum] = "abc"',
        'RDEPENDS:${PN}:append = " bash"',
        'LIST = "\\',
        '    one \\',
        '    two \\',
        '"',
        'inherit npm systemd',
        'require foo.inc',
        'include optional.inc',
        'do_install:append() {',
        '\tinstall -d ${D}${bindir}',
        '\tif [ -e x ]; then',
        '\t\techo {not a closing brace}',
        '\tfi',
        '}',
        '',
      ].join('\n'),
      'test.bb',
    );
    expect(statements.map((s) => s.kind)).toEqual([
      ...Array<string>(11).fill('assignment'),
      'inherit',
      'require',
      'include',
      'function',
    ]);
    const list = statements[10];
    expect(list).toMatchObject({ kind: 'assignment', name: 'LIST', value: '    one     two ', line: 12 });
    const fn = statements.at(-1);
    expect(fn).toMatchObject({ kind: 'function', name: 'do_install:append', line: 19 });
    expect(fn?.kind === 'function' && fn.body.split('\n')).toHaveLength(4);
  });

  it.each([
    ['python do_x() {\n}', 1, 'python functions'],
    ['A = "${@bb.utils.contains()}"', 1, 'inline python'],
    ['export A = "1"', 1, 'export'],
    ['addtask do_x after do_y', 1, 'addtask'],
    ['A_append = " x"', 1, 'old override syntax'],
    ['RDEPENDS_${PN} += "bash"', 1, 'old override syntax'],
    ['RDEPENDS:${PN}_remove = "bash"', 1, 'old override syntax'],
    ['A = unquoted', 1, 'one quoted string'],
    ['A = "a"b"', 1, 'stray "'],
    ['A = "${B"', 1, 'unbalanced'],
    ['# comment \\\nA = "1"', 1, 'comment continued'],
    ['A = "1 \\\n# inside\n2"', 1, 'comment inside a continued statement'],
    ['A = "1"\n  B = "2"', 2, 'beginning of the line'],
    ['A = "1"\n\nfoo bar', 3, 'not a BitBake statement'],
    ['do_x() {\n  true\n', 1, 'no closing'],
    ['A = "1" \\', 1, 'end of the file'],
    ['inherit npm sys$tem', 1, 'not a class name'],
    ['A::append = "x"', 1, 'malformed override'],
  ])('refuses %j at line %i', (text, line, reason) => {
    const err = refusal(text);
    expect(err.line).toBe(line);
    expect(err.message).toContain(`test.bb:${line}:`);
    expect(err.reason).toContain(reason);
  });
});

describe('BitBake evaluation', () => {
  it('applies the assignment operators in order', () => {
    const data = evaluate(
      [
        'A = "1"',
        'A += "2"',
        'A =+ "0"',
        'A .= "x"',
        'A =. "y"',
        'B ?= "first"',
        'B ?= "second"',
        'C ??= "weak"',
        'D ??= "weak"',
        'D = "strong"',
        'E = "${A}"',
        'F := "${A}"',
        'A = "changed"',
      ].join('\n'),
    );
    expect(data.get('E')).toBe('changed');
    expect(data.get('F')).toBe('y0 1 2x');
    expect(data.get('B')).toBe('first');
    expect(data.get('C')).toBe('weak');
    expect(data.get('D')).toBe('strong');
    expect(data.get('unset')).toBeUndefined();
  });

  it('applies :append, :prepend and :remove when read, conditional ones only under their override', () => {
    const data = evaluate(
      [
        'L = "a b c"',
        'L:append = " d"',
        'L:prepend = "z "',
        'L:remove = "b"',
        'L:append:arm = " arm"',
        'L = "${X} b c"',
        'X = "a"',
      ].join('\n'),
    );
    expect(data.get('L')).toBe('z a c d');
    expect(data.get('L', ['arm'])).toBe('z a c d arm');
  });

  it('expands variables in names and values, leaves unknown ones as written, reads flags', () => {
    const data = evaluate(
      ['USERADD_PARAM:${PN} = "--system ${PN}"', 'SRC_URI[sha256sum] = "${PN}-sum"', 'U = "${nope}/x"'].join('\n'),
      { PN: 'pkg' },
    );
    expect(data.get('USERADD_PARAM:pkg')).toBe('--system pkg');
    expect(data.getFlag('SRC_URI', 'sha256sum')).toBe('pkg-sum');
    expect(data.get('U')).toBe('${nope}/x');
  });

  it('splits URI lists into URLs and parameters', () => {
    expect(uriList(' file://a.tgz;subdir=x;striplevel=1  https://h/p ')).toEqual([
      { url: 'file://a.tgz', params: { subdir: 'x', striplevel: '1' } },
      { url: 'https://h/p', params: {} },
    ]);
    expect(() => uriList('file://a;broken')).toThrow(/malformed/);
  });
});
