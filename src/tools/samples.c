/* Synthetic chest radiographs and the sample studies.
 *
 * The renderer sums attenuation along each ray (in "attenuation units": path length in mm
 * times an effective coefficient per mm) through a few simple solids placed in millimetre
 * coordinates: u runs horizontally from the midline of the image (frontal: towards the
 * patient's left; lateral: towards the patient's back), v runs down from the top edge.
 * Nothing here is meant to be anatomically exact; it is meant to look like a chest
 * radiograph to a person and to a decoder, and to put the findings where a reader expects
 * them. Every random choice comes from a splitmix64 stream seeded by the parameters, so a
 * picture is a pure function of its parameters.
 */
#include "radraft/samples.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define FOV_MM 430.0      /* detector height in mm */
#define MU_TISSUE 0.020   /* soft tissue, per mm */
#define MU_BONE 0.030     /* bone in excess of the soft tissue it replaces, per mm */
#define AIR_FRACTION 0.85 /* lung: the part of its volume that is air */

/* ---- random numbers ------------------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unif(rng *r)
{
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [lo, hi). */
static double rng_range(rng *r, double lo, double hi)
{
    return lo + (hi - lo) * rng_unif(r);
}

static double rng_gauss(rng *r)
{
    double u1 = rng_unif(r), u2 = rng_unif(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- shape helpers ------------------------------------------------------------------- */

static double clamp01(double x)
{
    return x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
}

static double smoothstep(double e0, double e1, double x)
{
    double t = clamp01((x - e0) / (e1 - e0));
    return t * t * (3.0 - 2.0 * t);
}

/* The thickness profile of a rounded wall: 0 at margin 0, rising like a circle's edge to
 * 1 at margin w. It gives organ borders the crisp-but-rounded look of a curved surface
 * seen edge-on. */
static double wall(double m, double w)
{
    double t;
    if (m <= 0.0)
        return 0.0;
    if (m >= w)
        return 1.0;
    t = m / w;
    return sqrt(t * (2.0 - t));
}

/* Path length through a cylinder of radius r at distance d from its axis. */
static double chord(double r, double d)
{
    double q = r * r - d * d;
    return q > 0.0 ? 2.0 * sqrt(q) : 0.0;
}

/* ---- the canvas ---------------------------------------------------------------------- */

typedef struct canvas {
    int w, h;
    double s;      /* mm per pixel */
    double half_w; /* half the width in mm */
    float *a;      /* attenuation per pixel */
} canvas;

static double px_u(const canvas *c, int x)
{
    return (x + 0.5) * c->s - c->half_w;
}

static double px_v(const canvas *c, int y)
{
    return (y + 0.5) * c->s;
}

/* Adds a tube along the polyline (pu, pv) of n points, its radius going from r0 to r1
 * along the line, `mu` per mm of path. `hollow` in [0, 1) removes that share of an inner
 * core (0.6 of the radius) so that bones show a brighter cortex. Where `mask` is not NULL
 * the contribution is weighted by it (vessels only show inside the lungs) and kept as the
 * maximum of what is there and the tube rather than added. */
static void draw_tube(canvas *c, float *buf, const double *pu, const double *pv, int n, double r0,
                      double r1, double mu, double hollow, const float *mask)
{
    double umin = 1e9, umax = -1e9, vmin = 1e9, vmax = -1e9, rmax = r0 > r1 ? r0 : r1;
    double total = 0.0, seglen[64], cum[65];
    int x0, x1, y0, y1;

    if (n < 2 || n > 64)
        return;
    cum[0] = 0.0;
    for (int i = 0; i < n; i++) {
        umin = fmin(umin, pu[i]);
        umax = fmax(umax, pu[i]);
        vmin = fmin(vmin, pv[i]);
        vmax = fmax(vmax, pv[i]);
        if (i + 1 < n) {
            seglen[i] = hypot(pu[i + 1] - pu[i], pv[i + 1] - pv[i]);
            total += seglen[i];
            cum[i + 1] = total;
        }
    }
    if (total <= 0.0)
        return;
    x0 = (int)floor((umin - rmax + c->half_w) / c->s);
    x1 = (int)ceil((umax + rmax + c->half_w) / c->s);
    y0 = (int)floor((vmin - rmax) / c->s);
    y1 = (int)ceil((vmax + rmax) / c->s);
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 > c->w - 1)
        x1 = c->w - 1;
    if (y1 > c->h - 1)
        y1 = c->h - 1;
    for (int y = y0; y <= y1; y++) {
        double v = px_v(c, y);
        for (int x = x0; x <= x1; x++) {
            double u = px_u(c, x), best = 1e18, at = 0.0, r, path;
            for (int i = 0; i + 1 < n; i++) {
                double du = pu[i + 1] - pu[i], dv = pv[i + 1] - pv[i];
                double t = seglen[i] > 0.0
                               ? ((u - pu[i]) * du + (v - pv[i]) * dv) / (seglen[i] * seglen[i])
                               : 0.0;
                double eu, ev, d2;
                t = clamp01(t);
                eu = pu[i] + t * du - u;
                ev = pv[i] + t * dv - v;
                d2 = eu * eu + ev * ev;
                if (d2 < best) {
                    best = d2;
                    at = cum[i] + t * seglen[i];
                }
            }
            r = r0 + (r1 - r0) * (at / total);
            if (best >= r * r)
                continue;
            path = chord(r, sqrt(best)) - hollow * chord(0.6 * r, sqrt(best));
            if (mask) {
                /* Vessels: weighted by the lung around them, and combined by maximum so that
                 * a branching point does not become a bright dot that looks like a nodule. */
                float *dst = &buf[(size_t)y * (size_t)c->w + (size_t)x];
                float val = (float)(mu * path * mask[(size_t)y * (size_t)c->w + (size_t)x]);
                if (val > *dst)
                    *dst = val;
                continue;
            }
            buf[(size_t)y * (size_t)c->w + (size_t)x] += (float)(mu * path);
        }
    }
}

/* ---- the anatomy --------------------------------------------------------------------- */

/* Patient-specific dimensions in mm, drawn once from the seed so that the PA and the
 * lateral of one patient agree. */
typedef struct anatomy {
    double apex_v;             /* top of the lung apices */
    double lat_max;            /* half the inner width of the thorax */
    double dome_v[2];          /* top of the right [0] and left [1] hemidiaphragm */
    double cp_v;               /* level of the costophrenic angles */
    double heart_w;            /* transverse heart diameter */
    double heart_uc, heart_vc; /* centre of the heart's ellipse */
    double heart_a, heart_b;   /* its semi-axes */
    double heart_theta;        /* its long axis, radians below the horizontal */
    double heart_h;            /* its vertical extent */
    double chest_depth;        /* anteroposterior depth of the chest */
    double body_half;          /* half the width of the body at the chest */
    double shift;              /* small lateral offset of the patient on the detector */
    double hilum_u[2], hilum_v[2];
    double rib_v0, rib_dv;                /* level of the first posterior rib and the rib spacing */
    double nodule_u, nodule_v, nodule_ap; /* nodule centre: transverse, level, depth */
} anatomy;

static void anatomy_make(const rd_sample_params *p, anatomy *an)
{
    rng r = {p->seed * 0x2545F4914F6CDD1Dull + 17};
    double ctr = p->ctr;

    an->apex_v = rng_range(&r, 44.0, 54.0);
    an->lat_max = rng_range(&r, 138.0, 150.0);
    an->dome_v[0] = rng_range(&r, 283.0, 295.0);
    an->dome_v[1] = an->dome_v[0] + rng_range(&r, 8.0, 16.0);
    an->cp_v = an->dome_v[1] + rng_range(&r, 22.0, 30.0);
    if (p->view == RD_SAMPLE_VIEW_AP)
        ctr *= 1.1; /* the heart is further from the detector: magnified */
    an->heart_w = ctr * 2.0 * an->lat_max;
    an->heart_theta = rng_range(&r, 0.55, 0.7);
    {
        /* Scale the axes so that the horizontal extent is the requested diameter. */
        double c = cos(an->heart_theta), s = sin(an->heart_theta), a = 0.6, b = 0.43;
        double wfac = 2.0 * sqrt(a * a * c * c + b * b * s * s);
        double hfac = 2.0 * sqrt(a * a * s * s + b * b * c * c);
        an->heart_a = a * an->heart_w / wfac;
        an->heart_b = b * an->heart_w / wfac;
        an->heart_h = hfac * an->heart_w / wfac;
    }
    an->heart_uc = (0.5 - rng_range(&r, 0.28, 0.33)) * an->heart_w;
    an->heart_vc = an->dome_v[1] - 0.36 * an->heart_h;
    an->chest_depth = rng_range(&r, 205.0, 235.0);
    an->body_half = an->lat_max + rng_range(&r, 24.0, 34.0);
    an->shift = rng_range(&r, -6.0, 6.0);
    an->hilum_u[0] = -rng_range(&r, 45.0, 55.0);
    an->hilum_v[0] = rng_range(&r, 195.0, 210.0);
    an->hilum_u[1] = rng_range(&r, 50.0, 58.0);
    an->hilum_v[1] = an->hilum_v[0] - rng_range(&r, 6.0, 14.0);
    an->rib_v0 = an->apex_v + rng_range(&r, 4.0, 10.0);
    an->rib_dv = rng_range(&r, 23.5, 26.0);
    an->nodule_u = -rng_range(&r, 62.0, 82.0);
    an->nodule_v = rng_range(&r, 120.0, 145.0);
    an->nodule_ap = -rng_range(&r, 20.0, 40.0);
    if (p->nodule == RD_SAMPLE_SIDE_LEFT)
        an->nodule_u = -an->nodule_u;
}

/* Half-width of the body at level v (neck, shoulders, chest, abdomen). */
static double body_half(const anatomy *an, double v)
{
    return 58.0 + (an->body_half - 58.0) * smoothstep(8.0, 85.0, v) -
           10.0 * smoothstep(230.0, 430.0, v);
}

/* Anteroposterior depth of the body at level v. */
static double body_depth(const anatomy *an, double v)
{
    return 115.0 + (an->chest_depth - 115.0) * smoothstep(25.0, 150.0, v);
}

/* Half-width of the thoracic cavity (the lateral lung border) at level v. */
static double lung_lat(const anatomy *an, double v)
{
    double t = clamp01((v - an->apex_v) / 200.0);
    return 36.0 + (an->lat_max - 36.0) * pow(sin(0.5 * M_PI * t), 0.7);
}

/* Horizontal extent of the heart at level v: the heart is an ellipse whose long axis runs
 * from the upper right down to the apex at the lower left (the image's lower right).
 * Returns 0 above or below it, else 1 with *left and *right (image left/right u). */
static int heart_span(const anatomy *an, double v, double *left, double *right)
{
    double c = cos(an->heart_theta), s = sin(an->heart_theta);
    double ia = 1.0 / (an->heart_a * an->heart_a), ib = 1.0 / (an->heart_b * an->heart_b);
    double dv = v - an->heart_vc;
    double qa = c * c * ia + s * s * ib, qb = 2.0 * dv * s * c * (ia - ib);
    double qc = dv * dv * (s * s * ia + c * c * ib) - 1.0, disc = qb * qb - 4.0 * qa * qc;
    if (disc <= 0.0)
        return 0;
    *left = an->heart_uc + (-qb - sqrt(disc)) / (2.0 * qa);
    *right = an->heart_uc + (-qb + sqrt(disc)) / (2.0 * qa);
    return 1;
}

/* Level of the hemidiaphragm (side 0 right, 1 left) at distance au from the midline. */
static double diaphragm(const anatomy *an, int side, double au)
{
    double peak_u = 0.48 * an->lat_max;
    double k = (an->cp_v - an->dome_v[side]) / ((an->lat_max - peak_u) * (an->lat_max - peak_u));
    return an->dome_v[side] + k * (au - peak_u) * (au - peak_u);
}

/* Depth of aerated lung (mm) along a frontal ray at (u, v): both lungs, the posterior
 * recesses below the domes, and the effusion replacing air at one base. */
static double frontal_air(const anatomy *an, const rd_sample_params *p, double u, double v)
{
    int side = u < 0.0 ? 0 : 1; /* the patient's right is on the image's left */
    double au = fabs(u), lat = lung_lat(an, v), hl = 0.0, hr = 0.0;
    double med, front, top, dia, depth, m_bot, air, base, beside;

    /* `med` is the mediastinal border that the posterior lung reaches behind the heart;
     * `front` adds the heart, which the anterior lung wraps around. */
    if (side == 0) {
        /* The right atrium: a gentle arc, most lateral a little above the dome. */
        double q = (v - (an->dome_v[0] - 18.0)) / (0.55 * an->heart_h);
        double ra = fabs(q) < 1.0 ? (0.5 * an->heart_w - an->heart_uc) * sqrt(1.0 - q * q) : 0.0;
        med = 24.0 + 9.0 * smoothstep(60.0, 170.0, v) - 3.0 * smoothstep(170.0, 230.0, v);
        front = fmax(med, ra);
    } else {
        med = 26.0 + 18.0 * exp(-pow((v - 150.0) / 17.0, 2.0)) +
              10.0 * exp(-pow((v - 186.0) / 15.0, 2.0)) + 8.0 * smoothstep(150.0, 200.0, v);
        front = fmax(med, heart_span(an, v, &hl, &hr) ? hr : 0.0);
    }
    top = an->apex_v + 0.006 * (au - 58.0) * (au - 58.0);
    dia = diaphragm(an, side, au);
    depth = 45.0 + 115.0 * smoothstep(an->apex_v, an->apex_v + 130.0, v);
    m_bot = dia - v;
    beside = 0.68 * wall(au - front, 9.0) + 0.32 * wall(au - med, 14.0);
    base = wall(lat - au, 30.0) * beside * wall(v - top, 26.0);
    if (m_bot >= 0.0)
        air = fmax(wall(m_bot, 5.0), 0.3) * base;
    else
        air = 0.3 * (1.0 - smoothstep(0.0, 38.0, -m_bot)) * base;
    air *= depth;
    if (p->effusion != RD_SAMPLE_SIDE_NONE && side == (p->effusion == RD_SAMPLE_SIDE_LEFT)) {
        double t = clamp01((au - 40.0) / (an->lat_max - 40.0));
        double level = diaphragm(an, side, au) - p->effusion_mm * t * t;
        air *= 1.0 - 0.97 * smoothstep(level - 6.0, level + 28.0, v);
    }
    return air;
}

/* Depth of aerated lung along a lateral ray at (u, v): both lungs superimposed, less the
 * heart, with the effusion in one posterior costophrenic sulcus. */
static double lateral_air(const anatomy *an, const rd_sample_params *p, double u, double v)
{
    double hd = 0.5 * body_depth(an, v), total = 0.0;
    double ant = -hd + 16.0, post = hd - 10.0;
    double top = an->apex_v - 4.0 + 0.005 * (u - 15.0) * (u - 15.0);
    double width = 2.0 * (lung_lat(an, v) - 30.0);
    double hx = 0.5 * an->heart_w * 0.7, hu = -hd + 8.0 + hx, hy;
    double qx, qy, hrem;

    for (int side = 0; side < 2; side++) {
        /* Each dome is highest a little anterior to the middle and falls into the deep
         * posterior sulcus. */
        double peak_u = -25.0 + 6.0 * side;
        double k_post = (an->cp_v + 18.0 - an->dome_v[side]) / ((post - peak_u) * (post - peak_u));
        double k_ant =
            (an->dome_v[side] + 30.0 - an->dome_v[side]) / ((ant - peak_u) * (ant - peak_u));
        double dia = an->dome_v[side] + (u > peak_u ? k_post : k_ant) * (u - peak_u) * (u - peak_u);
        double m_bot = dia - v;
        double a = 0.5 * width * wall(u - ant, 34.0) * wall(post - u, 22.0) * wall(v - top, 26.0) *
                   (m_bot >= 0.0 ? wall(m_bot, 5.0) : 0.0);
        int eff_side = p->effusion == RD_SAMPLE_SIDE_LEFT ? 1 : 0;
        if (p->effusion != RD_SAMPLE_SIDE_NONE && side == eff_side) {
            double t = clamp01((u - peak_u) / (post - peak_u));
            double level = dia - 0.9 * p->effusion_mm * t * t;
            a *= 1.0 - 0.97 * smoothstep(level - 6.0, level + 26.0, v);
        }
        total += fmax(a, 0.0);
    }
    /* The heart is an ellipsoid in the anterior lower chest; its transverse extent along
     * the ray displaces lung. */
    /* Tilted: the long axis runs from the upper back down to the lower front. */
    hy = 0.68 * an->heart_h;
    qx = ((u - hu) * 0.9 + (v - an->heart_vc) * 0.44) / hx;
    qy = (-(u - hu) * 0.44 + (v - an->heart_vc) * 0.9) / hy;
    hrem = 1.0 - qx * qx - qy * qy;
    if (hrem > 0.0)
        total -= 0.65 * an->heart_w * sqrt(hrem);
    return fmax(total, 0.0);
}

/* ---- the views ----------------------------------------------------------------------- */

/* Vertebra k (0 = C7) : top level and height. */
static void vertebra(int k, double *top, double *height)
{
    double t = 8.0;
    for (int i = 0; i < k; i++)
        t += 19.5 + 0.75 * i;
    *top = t;
    *height = 19.5 + 0.75 * k;
}

static void render_frontal(canvas *c, const anatomy *an, const rd_sample_params *p, rng *r,
                           float *air_map)
{
    double pu[64], pv[64];

    for (int y = 0; y < c->h; y++) {
        double v = px_v(c, y), bh = body_half(an, v), bd = body_depth(an, v);
        for (int x = 0; x < c->w; x++) {
            double u = px_u(c, x) - an->shift, q = u / bh, body, air;
            size_t i = (size_t)y * (size_t)c->w + (size_t)x;
            body = fabs(q) < 1.0 ? bd * sqrt(1.0 - q * q) : 0.0;
            air = frontal_air(an, p, u, v);
            air_map[i] = (float)air;
            c->a[i] = (float)(MU_TISSUE * (body - AIR_FRACTION * air));
            /* The gastric air bubble under the left dome. */
            {
                double gu = (u - 0.5 * an->lat_max) / 26.0,
                       gv = (v - diaphragm(an, 1, 0.5 * an->lat_max) - 20.0) / 13.0;
                double g = 1.0 - gu * gu - gv * gv;
                if (g > 0.0 && v > diaphragm(an, 1, fabs(u)) + 4.0)
                    c->a[i] -= (float)(MU_TISSUE * 30.0 * sqrt(g));
            }
        }
    }

    /* Spine: vertebral bodies with end plates and disc spaces, pedicles as rings. */
    for (int k = 0; k < 16; k++) {
        double top, hgt;
        vertebra(k, &top, &hgt);
        for (int y = 0; y < c->h; y++) {
            double v = px_v(c, y), in = v - top;
            if (in < 0.0 || in > hgt)
                continue;
            for (int x = 0; x < c->w; x++) {
                double u = px_u(c, x) - an->shift, au = fabs(u), add;
                double hw = 19.0 + 0.5 * k;
                size_t i = (size_t)y * (size_t)c->w + (size_t)x;
                if (au > hw + 12.0)
                    continue;
                /* Body: flat-topped, the disc space a lucent band of 5 mm. */
                add = chord(hw, au) * 0.14 * wall(in - 5.0, 2.5) * wall(hgt - in, 2.0);
                /* Pedicles: ovals at the lateral edges of the upper half. */
                {
                    double pdu = (au - hw * 0.72) / 4.5, pdv = (in - 0.45 * hgt) / (0.22 * hgt);
                    double pd = sqrt(pdu * pdu + pdv * pdv);
                    if (pd < 1.0)
                        add += (pd > 0.55 ? 3.0 : 1.2);
                }
                /* Spinous process: a teardrop in the midline. */
                {
                    double su = u / 4.0, sv = (in - 0.75 * hgt) / (0.3 * hgt);
                    if (su * su + sv * sv < 1.0)
                        add += 3.0;
                }
                c->a[i] += (float)(MU_BONE * add);
            }
        }
    }

    /* Trachea and main bronchi: air columns. */
    {
        double carina = an->hilum_v[0] - 40.0;
        pu[0] = 0.0, pv[0] = 0.0, pu[1] = 2.0, pv[1] = carina;
        draw_tube(c, c->a, pu, pv, 2, 9.5, 8.0, -MU_TISSUE * 0.9, 0.0, NULL);
        pu[0] = 2.0, pv[0] = carina, pu[1] = an->hilum_u[0] + 10.0, pv[1] = an->hilum_v[0] - 8.0;
        draw_tube(c, c->a, pu, pv, 2, 7.0, 5.0, -MU_TISSUE * 0.9, 0.0, NULL);
        pu[1] = an->hilum_u[1] - 12.0, pv[1] = an->hilum_v[1] + 8.0;
        draw_tube(c, c->a, pu, pv, 2, 6.5, 5.0, -MU_TISSUE * 0.9, 0.0, NULL);
    }

    /* Ribs: posterior arcs from the spine out to the chest wall, then the fainter anterior
     * ribs sloping down towards the sternum. */
    for (int side = 0; side < 2; side++) {
        double sg = side ? 1.0 : -1.0;
        for (int k = 0; k < 10; k++) {
            double v0 = an->rib_v0 + k * an->rib_dv + rng_range(r, -1.5, 1.5);
            double lat_end = lung_lat(an, v0 + 30.0) + 3.0, rad = 4.0 + 0.12 * k;
            int n = 24;
            for (int j = 0; j < n; j++) {
                double t = (double)j / (n - 1);
                pu[j] = an->shift + sg * (16.0 + (lat_end - 16.0) * t);
                pv[j] = v0 - 12.0 * sin(M_PI * t * 0.8) + 40.0 * pow(t, 2.2);
            }
            /* The lateral turn: the rib is seen edge-on as it curves forward. */
            pu[n] = pu[n - 1] + sg * 3.0, pv[n] = pv[n - 1] + 7.0;
            pu[n + 1] = pu[n - 1], pv[n + 1] = pv[n - 1] + 14.0;
            draw_tube(c, c->a, pu, pv, n + 2, rad * 0.9, rad * 1.1, MU_BONE * 0.75, 0.55, NULL);
            {
                double ua = pu[n + 1], va = pv[n + 1], ue = 40.0 + 3.0 * k, drop = 56.0 + 2.0 * k;
                for (int j = 0; j < n; j++) {
                    double t = (double)j / (n - 1);
                    pu[j] = ua - sg * (fabs(ua - an->shift) - ue) * t;
                    pv[j] = va + drop * (0.35 * t + 0.65 * t * t) - 6.0 * sin(M_PI * t);
                }
                draw_tube(c, c->a, pu, pv, n, rad * 1.05, rad * 1.2, MU_BONE * 0.35, 0.4, NULL);
            }
        }
        /* Clavicle: a gentle S from the sternal end up to the acromion. */
        {
            int n = 20;
            double v0 = an->apex_v + 30.0, v1 = an->apex_v + 8.0;
            for (int j = 0; j < n; j++) {
                double t = (double)j / (n - 1);
                pu[j] = an->shift + sg * (20.0 + 120.0 * t);
                pv[j] = v0 + (v1 - v0) * t + 6.0 * sin(2.0 * M_PI * t);
            }
            draw_tube(c, c->a, pu, pv, n, 8.5, 7.0, MU_BONE * 1.2, 0.5, NULL);
        }
    }

    /* Vessels: branching trees from each hilum, shown where there is lung around them. */
    {
        size_t n = (size_t)c->w * (size_t)c->h;
        float *vessels = calloc(n, sizeof *vessels), *mask = air_map;
        if (vessels) {
            for (size_t i = 0; i < n; i++)
                mask[i] = (float)clamp01(air_map[i] / 60.0);
            for (int side = 0; side < 2; side++) {
                double sg = side ? 1.0 : -1.0;
                for (int b = 0; b < 9; b++) {
                    /* Depth-first growth with an explicit stack: (u, v, angle, length,
                     * radius, generation). Each segment bends a little on its way. */
                    double st[64][6];
                    int sp = 0;
                    double ang = -2.2 + 3.5 * (b + rng_range(r, 0.2, 0.8)) / 9.0;
                    st[sp][0] = an->hilum_u[side] + an->shift + rng_range(r, -8.0, 8.0);
                    st[sp][1] = an->hilum_v[side] + rng_range(r, -12.0, 12.0);
                    st[sp][2] = ang;
                    st[sp][3] = rng_range(r, 22.0, 32.0);
                    st[sp][4] = rng_range(r, 3.2, 4.2);
                    st[sp][5] = 0;
                    sp++;
                    while (sp > 0) {
                        double su, sv, sa, sl, sr, g, bend;
                        sp--;
                        su = st[sp][0], sv = st[sp][1], sa = st[sp][2], sl = st[sp][3];
                        sr = st[sp][4], g = st[sp][5];
                        bend = rng_range(r, -0.25, 0.25);
                        pu[0] = su, pv[0] = sv;
                        pu[1] = su + sg * 0.5 * sl * cos(sa), pv[1] = sv + 0.5 * sl * sin(sa);
                        sa += bend;
                        pu[2] = pu[1] + sg * 0.5 * sl * cos(sa), pv[2] = pv[1] + 0.5 * sl * sin(sa);
                        draw_tube(c, vessels, pu, pv, 3, sr, sr * 0.85, MU_TISSUE * 1.4, 0.0, mask);
                        if (g >= 6 || sp + 2 > 64)
                            continue;
                        for (int ch = 0; ch < 2; ch++) {
                            /* Unequal branching: a main trunk and a smaller side branch. */
                            int major = ch == 0;
                            st[sp][0] = pu[2];
                            st[sp][1] = pv[2];
                            st[sp][2] = sa + (major ? rng_range(r, -0.2, 0.2)
                                                    : (rng_unif(r) < 0.5 ? -1.0 : 1.0) *
                                                          rng_range(r, 0.5, 0.9));
                            st[sp][3] =
                                sl * (major ? rng_range(r, 0.8, 0.95) : rng_range(r, 0.55, 0.75));
                            st[sp][4] = sr * (major ? 0.82 : 0.62);
                            st[sp][5] = g + 1;
                            sp++;
                        }
                    }
                }
            }
            for (size_t i = 0; i < n; i++)
                c->a[i] += vessels[i];
            free(vessels);
        }
    }

    /* The nodule: a sphere of soft tissue in the lung. */
    if (p->nodule != RD_SAMPLE_SIDE_NONE) {
        pu[0] = pu[1] = an->nodule_u + an->shift;
        pv[0] = an->nodule_v, pv[1] = an->nodule_v + 0.01;
        /* A sphere's projection: path 2*sqrt(r^2-d^2), the same as a short tube. */
        draw_tube(c, c->a, pu, pv, 2, 0.5 * p->nodule_mm, 0.5 * p->nodule_mm, MU_TISSUE * 1.8, 0.0,
                  NULL);
    }
}

static void render_lateral(canvas *c, const anatomy *an, const rd_sample_params *p, rng *r)
{
    double pu[64], pv[64];

    for (int y = 0; y < c->h; y++) {
        double v = px_v(c, y), hd = 0.5 * body_depth(an, v), lw = 2.0 * body_half(an, v);
        for (int x = 0; x < c->w; x++) {
            double u = px_u(c, x) - an->shift * 0.5, q = u / hd, body, air;
            size_t i = (size_t)y * (size_t)c->w + (size_t)x;
            /* The shoulders and arms add soft tissue over the upper chest. */
            double arms = 60.0 * exp(-pow((v - 70.0) / 45.0, 2.0)) * (fabs(q) < 1.0 ? 1.0 : 0.0);
            body = fabs(q) < 1.0 ? lw * sqrt(1.0 - q * q) + arms : 0.0;
            air = lateral_air(an, p, u, v);
            c->a[i] = (float)(MU_TISSUE * (body - AIR_FRACTION * air));
        }
    }

    /* Thoracic spine: vertebral bodies posteriorly, following a gentle kyphosis. */
    for (int k = 0; k < 16; k++) {
        double top, hgt;
        vertebra(k, &top, &hgt);
        for (int y = 0; y < c->h; y++) {
            double v = px_v(c, y), in = v - top, hd = 0.5 * body_depth(an, v);
            double front = 0.18 * hd - 8.0 + 10.0 * sin(M_PI * clamp01((v - 40.0) / 320.0));
            double depth = 18.0 + 1.2 * k;
            if (in < 0.0 || in > hgt)
                continue;
            for (int x = 0; x < c->w; x++) {
                double u = px_u(c, x) - an->shift * 0.5, m = u - front, add = 0.0;
                size_t i = (size_t)y * (size_t)c->w + (size_t)x;
                if (m < -2.0 || m > depth + 30.0)
                    continue;
                if (m <= depth) {
                    /* A box with a denser cortical rim and a lucent disc space. */
                    double rim = fmin(fmin(m, depth - m), fmin(in - 5.0, hgt - in));
                    if (in > 5.0)
                        add = (rim < 2.0 ? 16.0 : 10.0) * wall(m, 2.0) * wall(depth - m, 2.0);
                } else {
                    /* Posterior elements: pedicles and laminae, fainter. */
                    double pe = (m - depth) / 30.0, pv2 = (in - 0.4 * hgt) / (0.35 * hgt);
                    double q2 = pe * pe + pv2 * pv2;
                    if (q2 < 1.0)
                        add = 7.0 * sqrt(1.0 - q2);
                }
                c->a[i] += (float)(MU_BONE * add);
            }
        }
    }

    /* Sternum, anterior. */
    {
        double v0 = an->apex_v + 40.0, v1 = an->heart_vc + 40.0;
        pu[0] = -0.5 * body_depth(an, v0) + 7.0, pv[0] = v0;
        pu[1] = -0.5 * body_depth(an, v1) + 6.0, pv[1] = v1;
        draw_tube(c, c->a, pu, pv, 2, 6.0, 5.0, MU_BONE * 1.2, 0.5, NULL);
    }

    /* Trachea: an air column sloping back to the carina. */
    pu[0] = -28.0, pv[0] = 0.0, pu[1] = 2.0, pv[1] = an->hilum_v[0] - 40.0;
    draw_tube(c, c->a, pu, pv, 2, 9.0, 8.0, -MU_TISSUE * 0.9, 0.0, NULL);

    /* Aorta: ascending, arch and descending, as a soft-tissue tube among the lungs. */
    {
        int n = 24;
        double hd = 0.5 * an->chest_depth;
        for (int j = 0; j < n; j++) {
            double t = (double)j / (n - 1), a = M_PI * (1.0 - t);
            if (j < 16) {
                double tt = (double)j / 15.0, aa = M_PI * (1.0 - tt);
                pu[j] = 12.0 + 42.0 * cos(aa);
                pv[j] = an->apex_v + 95.0 - 38.0 * sin(aa) + (tt < 0.2 ? (0.2 - tt) * 150.0 : 0.0);
            } else {
                (void)a;
                pu[j] = 54.0 + (hd - 75.0 - 54.0) * (t - 0.65) / 0.35;
                pv[j] = pv[15] + (an->cp_v - pv[15]) * (t - 0.65) / 0.35;
            }
        }
        draw_tube(c, c->a, pu, pv, n, 15.0, 12.0, MU_TISSUE * 0.6, 0.0, NULL);
    }

    /* Ribs of both sides, nearly superimposed, sloping down and forward. */
    for (int side = 0; side < 2; side++) {
        double off = side ? 4.0 : -2.0, mag = side ? 1.0 : 1.04;
        for (int k = 0; k < 10; k++) {
            double v0 = an->rib_v0 + 10.0 + k * an->rib_dv + off + rng_range(r, -1.0, 1.0);
            double hd = 0.5 * body_depth(an, v0);
            int n = 16;
            for (int j = 0; j < n; j++) {
                double t = (double)j / (n - 1);
                pu[j] = mag * (hd - 20.0 - (2.0 * hd - 40.0) * t);
                pv[j] = v0 + 70.0 * t * t - 10.0 * sin(M_PI * t) + 12.0 * t;
            }
            draw_tube(c, c->a, pu, pv, n, 4.5, 5.0, MU_BONE * 0.45, 0.5, NULL);
        }
    }

    if (p->nodule != RD_SAMPLE_SIDE_NONE) {
        pu[0] = pu[1] = an->nodule_ap;
        pv[0] = an->nodule_v, pv[1] = an->nodule_v + 0.01;
        draw_tube(c, c->a, pu, pv, 2, 0.5 * p->nodule_mm, 0.5 * p->nodule_mm, MU_TISSUE * 1.8, 0.0,
                  NULL);
    }
}

/* Separable Gaussian blur of `src` into `dst` (both w x h), `tmp` a scratch buffer. */
static void blur(const float *src, float *dst, float *tmp, int w, int h, double sigma)
{
    int rad = (int)ceil(3.0 * sigma);
    double k[256], ksum = 0.0;
    if (rad < 1)
        rad = 1;
    if (rad > 127)
        rad = 127;
    for (int i = -rad; i <= rad; i++)
        ksum += (k[i + rad] = exp(-0.5 * i * i / (sigma * sigma)));
    for (int i = 0; i <= 2 * rad; i++)
        k[i] /= ksum;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double acc = 0.0;
            for (int i = -rad; i <= rad; i++) {
                int xx = x + i < 0 ? 0 : (x + i >= w ? w - 1 : x + i);
                acc += k[i + rad] * src[(size_t)y * (size_t)w + (size_t)xx];
            }
            tmp[(size_t)y * (size_t)w + (size_t)x] = (float)acc;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double acc = 0.0;
            for (int i = -rad; i <= rad; i++) {
                int yy = y + i < 0 ? 0 : (y + i >= h ? h - 1 : y + i);
                acc += k[i + rad] * tmp[(size_t)yy * (size_t)w + (size_t)x];
            }
            dst[(size_t)y * (size_t)w + (size_t)x] = (float)acc;
        }
}

/* ---- public: rendering --------------------------------------------------------------- */

void rd_sample_params_default(rd_sample_params *p)
{
    memset(p, 0, sizeof *p);
    p->seed = 1;
    p->view = RD_SAMPLE_VIEW_PA;
    p->rows = 1024;
    p->ctr = 0.45;
    p->effusion = RD_SAMPLE_SIDE_NONE;
    p->effusion_mm = 45.0;
    p->nodule = RD_SAMPLE_SIDE_NONE;
    p->nodule_mm = 12.0;
    p->noise = 1.0;
}

int rd_sample_columns(int rows)
{
    return 2 * (int)(rows * 0.43 + 0.5);
}

double rd_sample_pixel_spacing(int rows)
{
    return rows > 0 ? FOV_MM / rows : 0.0;
}

rd_status rd_sample_render(const rd_sample_params *p, rd_image **out, rd_error *err)
{
    rd_image *img = NULL;
    canvas c;
    anatomy an;
    float *air = NULL, *tmp = NULL, *low = NULL;
    rng r;
    size_t n;
    rd_status st;
    double sigma_px, gain;

    if (!p || !out)
        return rd_error_set(err, RD_E_INVALID, "sample render: NULL argument");
    if (p->rows < RD_SAMPLE_MIN_ROWS || p->rows > RD_SAMPLE_MAX_ROWS)
        return rd_error_set(err, RD_E_INVALID, "sample render: rows %d outside %d..%d", p->rows,
                            RD_SAMPLE_MIN_ROWS, RD_SAMPLE_MAX_ROWS);
    if (!(p->ctr >= 0.30 && p->ctr <= 0.75))
        return rd_error_set(err, RD_E_INVALID,
                            "sample render: cardiothoracic ratio %g outside 0.30..0.75", p->ctr);
    if ((int)p->view < 0 || p->view > RD_SAMPLE_VIEW_LATERAL || (int)p->effusion < 0 ||
        p->effusion > RD_SAMPLE_SIDE_LEFT || (int)p->nodule < 0 || p->nodule > RD_SAMPLE_SIDE_LEFT)
        return rd_error_set(err, RD_E_INVALID, "sample render: bad view, effusion or nodule side");
    if (!(p->effusion_mm >= 0.0 && p->effusion_mm <= 150.0) ||
        !(p->nodule_mm >= 2.0 && p->nodule_mm <= 60.0) || !(p->noise >= 0.0 && p->noise <= 10.0))
        return rd_error_set(err, RD_E_INVALID,
                            "sample render: effusion height (0..150 mm), nodule size "
                            "(2..60 mm) or noise (0..10) out of range");

    st = rd_image_create(&img, rd_sample_columns(p->rows), p->rows, err);
    if (st != RD_OK)
        return st;
    c.w = img->width;
    c.h = img->height;
    c.s = rd_sample_pixel_spacing(p->rows);
    c.half_w = 0.5 * c.w * c.s;
    c.a = img->data;
    n = (size_t)c.w * (size_t)c.h;
    air = calloc(n, sizeof *air);
    tmp = calloc(n, sizeof *tmp);
    low = calloc(n, sizeof *low);
    if (!air || !tmp || !low) {
        st = rd_error_set(err, RD_E_NOMEM, "sample render: out of memory");
        goto out;
    }

    anatomy_make(p, &an);
    r.s = p->seed * 0x9E3779B97F4A7C15ull + 0x1234567ull + (uint64_t)p->view * 0x51ull;
    if (p->view == RD_SAMPLE_VIEW_LATERAL)
        render_lateral(&c, &an, p, &r);
    else
        render_frontal(&c, &an, p, &r, air);

    /* Quantum noise on the attenuation, a little stronger where fewer photons arrive,
     * then the blur of the focal spot and the detector (about 0.35 mm). */
    for (size_t i = 0; i < n; i++)
        c.a[i] += (float)(p->noise * 0.022 * (1.0 + 0.12 * c.a[i]) * rng_gauss(&r));
    sigma_px = 0.35 / c.s;
    if (sigma_px > 0.3)
        blur(c.a, c.a, tmp, c.w, c.h, sigma_px);

    /* Processing as a radiography system does it: a mild unsharp mask (edge enhancement
     * at about 6 mm) and a filmic curve mapping attenuation to brightness. */
    blur(c.a, low, tmp, c.w, c.h, fmin(6.0 / c.s, 120.0));
    gain = p->view == RD_SAMPLE_VIEW_LATERAL ? 5.2 : 3.9;
    for (size_t i = 0; i < n; i++) {
        double a = c.a[i] + 0.6 * (c.a[i] - low[i]);
        double v = tanh(fmax(a, 0.0) / gain);
        c.a[i] = (float)clamp01(v);
    }
    *out = img;
    img = NULL;
    st = RD_OK;
out:
    free(air);
    free(tmp);
    free(low);
    rd_image_free(img);
    return st;
}

/* ---- public: UIDs -------------------------------------------------------------------- */

void rd_samples_uid(const char *key, char out[RD_UID_SIZE])
{
    /* Two independent 64-bit FNV-1a hashes finished with the splitmix64 mixer make a
     * 128-bit value; "2.25." + its decimal form is a valid UID of at most 44 characters. */
    uint64_t h[2] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    uint32_t limb[4];
    char digits[48];
    int nd = 0;

    for (const unsigned char *s = (const unsigned char *)key; *s; s++) {
        h[0] = (h[0] ^ *s) * 0x100000001b3ull;
        h[1] = (h[1] ^ (*s + 0x5bu)) * 0x100000001b3ull;
    }
    for (int k = 0; k < 2; k++) {
        rng m = {h[k] + (uint64_t)k};
        h[k] = rng_next(&m);
    }
    limb[0] = (uint32_t)(h[0] >> 32), limb[1] = (uint32_t)h[0];
    limb[2] = (uint32_t)(h[1] >> 32), limb[3] = (uint32_t)h[1];
    /* Repeated division of the 128-bit number by 10, most significant limb first. */
    for (;;) {
        uint64_t rem = 0;
        int zero = 1;
        for (int i = 0; i < 4; i++) {
            uint64_t cur = (rem << 32) | limb[i];
            limb[i] = (uint32_t)(cur / 10);
            rem = cur % 10;
            if (limb[i])
                zero = 0;
        }
        digits[nd++] = (char)('0' + rem);
        if (zero)
            break;
    }
    memcpy(out, "2.25.", 5);
    for (int i = 0; i < nd; i++)
        out[5 + i] = digits[nd - 1 - i];
    out[5 + nd] = '\0';
}

/* ---- public: the sample studies ------------------------------------------------------ */

#define CASE(id, name, birth, sex, finding, file, date, time, acc, view, ctr, eff, noduleside,     \
             cls, mono1, syntax)                                                                   \
    {                                                                                              \
        id, name, birth, sex, finding, file, date, time, acc,                                      \
            {0, view, 0, ctr, eff, 55.0, noduleside, 12.0, 1.0}, cls, mono1, syntax                \
    }

static const rd_sample_case cases[] = {
    CASE("RDS0001", "Synthetic^Normal", "19580312", "M", "normal", "pa.dcm", "20240115", "093000",
         "RDA0001", RD_SAMPLE_VIEW_PA, 0.44, RD_SAMPLE_SIDE_NONE, RD_SAMPLE_SIDE_NONE,
         RD_DICOM_XRAY_DX, 0, RD_DICOM_SYNTAX_EXPLICIT_LE),
    CASE("RDS0001", "Synthetic^Normal", "19580312", "M", "normal", "lateral.dcm", "20240115",
         "093000", "RDA0001", RD_SAMPLE_VIEW_LATERAL, 0.44, RD_SAMPLE_SIDE_NONE,
         RD_SAMPLE_SIDE_NONE, RD_DICOM_XRAY_DX, 0, RD_DICOM_SYNTAX_JPEG_LS),
    CASE("RDS0002", "Synthetic^Cardiomegaly", "19471103", "F", "cardiomegaly", "pa.dcm", "20240212",
         "141500", "RDA0002", RD_SAMPLE_VIEW_PA, 0.62, RD_SAMPLE_SIDE_NONE, RD_SAMPLE_SIDE_NONE,
         RD_DICOM_XRAY_CR, 1, RD_DICOM_SYNTAX_JPEG_LOSSLESS),
    CASE("RDS0002", "Synthetic^Cardiomegaly", "19471103", "F", "cardiomegaly", "lateral.dcm",
         "20240212", "141500", "RDA0002", RD_SAMPLE_VIEW_LATERAL, 0.62, RD_SAMPLE_SIDE_NONE,
         RD_SAMPLE_SIDE_NONE, RD_DICOM_XRAY_CR, 0, RD_DICOM_SYNTAX_RLE),
    CASE("RDS0003", "Synthétique^Éloïse", "19630721", "F", "left effusion", "pa.dcm", "20240305",
         "080500", "RDA0003", RD_SAMPLE_VIEW_PA, 0.47, RD_SAMPLE_SIDE_LEFT, RD_SAMPLE_SIDE_NONE,
         RD_DICOM_XRAY_DX, 0, RD_DICOM_SYNTAX_JPEG_LOSSLESS),
    CASE("RDS0003", "Synthétique^Éloïse", "19630721", "F", "left effusion", "lateral.dcm",
         "20240305", "080500", "RDA0003", RD_SAMPLE_VIEW_LATERAL, 0.47, RD_SAMPLE_SIDE_LEFT,
         RD_SAMPLE_SIDE_NONE, RD_DICOM_XRAY_DX, 0, RD_DICOM_SYNTAX_EXPLICIT_LE),
    CASE("RDS0004", "Synthetic^Nodule", "19700509", "M", "right upper lobe nodule", "pa.dcm",
         "20240320", "162000", "RDA0004", RD_SAMPLE_VIEW_PA, 0.43, RD_SAMPLE_SIDE_NONE,
         RD_SAMPLE_SIDE_RIGHT, RD_DICOM_XRAY_CR, 0, RD_DICOM_SYNTAX_RLE),
    CASE("RDS0004", "Synthetic^Nodule", "19700509", "M", "right upper lobe nodule", "lateral.dcm",
         "20240320", "162000", "RDA0004", RD_SAMPLE_VIEW_LATERAL, 0.43, RD_SAMPLE_SIDE_NONE,
         RD_SAMPLE_SIDE_RIGHT, RD_DICOM_XRAY_CR, 0, RD_DICOM_SYNTAX_JPEG_LS),
};

#undef CASE

size_t rd_samples_count(void)
{
    return sizeof cases / sizeof cases[0];
}

const rd_sample_case *rd_samples_case(size_t i)
{
    return i < rd_samples_count() ? &cases[i] : NULL;
}

void rd_samples_options_default(rd_samples_options *opts)
{
    opts->seed = 1;
    opts->rows = 1024;
    opts->force_syntax = -1;
}

rd_status rd_samples_case_path(size_t i, char *buf, size_t size, rd_error *err)
{
    const rd_sample_case *c = rd_samples_case(i);
    if (!c)
        return rd_error_set(err, RD_E_INVALID, "no sample case %zu", i);
    if ((size_t)snprintf(buf, size, "%s/%s", c->patient_id, c->file_name) >= size)
        return rd_error_set(err, RD_E_INVALID, "sample path too long");
    return RD_OK;
}

/* A 64-bit seed from text (FNV-1a, then mixed). */
static uint64_t seed_of(const char *text)
{
    uint64_t h = 0xcbf29ce484222325ull;
    rng m;
    for (const unsigned char *s = (const unsigned char *)text; *s; s++)
        h = (h ^ *s) * 0x100000001b3ull;
    m.s = h;
    return rng_next(&m);
}

rd_status rd_samples_write_case(size_t i, const rd_samples_options *opts, const char *path,
                                rd_error *err)
{
    const rd_sample_case *c = rd_samples_case(i);
    rd_samples_options def;
    rd_sample_params p;
    rd_dicom_xray_info info;
    rd_image *img = NULL;
    char key[256], study_uid[RD_UID_SIZE], series_uid[RD_UID_SIZE], sop_uid[RD_UID_SIZE], desc[128];
    int is_lat;
    rd_status st;

    if (!c)
        return rd_error_set(err, RD_E_INVALID, "no sample case %zu", i);
    if (!opts) {
        rd_samples_options_default(&def);
        opts = &def;
    }
    if (opts->force_syntax >= RD_DICOM_SYNTAX_COUNT)
        return rd_error_set(err, RD_E_INVALID, "bad transfer syntax %d", opts->force_syntax);
    is_lat = c->params.view == RD_SAMPLE_VIEW_LATERAL;

    p = c->params;
    p.rows = opts->rows;
    /* The patient's seed ties the PA and the lateral together; the UIDs also name the
     * size, so that different pixels never share a SOP Instance UID. */
    snprintf(key, sizeof key, "radraft-samples/%llu/%s", (unsigned long long)opts->seed,
             c->patient_id);
    p.seed = seed_of(key);
    snprintf(key, sizeof key, "radraft-samples/%llu/%d/%s/study", (unsigned long long)opts->seed,
             opts->rows, c->patient_id);
    rd_samples_uid(key, study_uid);
    snprintf(key, sizeof key, "radraft-samples/%llu/%d/%s/series/%s",
             (unsigned long long)opts->seed, opts->rows, c->patient_id, c->file_name);
    rd_samples_uid(key, series_uid);
    snprintf(key, sizeof key, "radraft-samples/%llu/%d/%s/instance/%s",
             (unsigned long long)opts->seed, opts->rows, c->patient_id, c->file_name);
    rd_samples_uid(key, sop_uid);

    st = rd_sample_render(&p, &img, err);
    if (st != RD_OK)
        return st;

    rd_dicom_xray_info_default(&info);
    info.sop_class = c->sop_class;
    info.syntax = opts->force_syntax >= 0 ? (rd_dicom_syntax)opts->force_syntax : c->syntax;
    info.patient_name = c->patient_name;
    info.patient_id = c->patient_id;
    info.patient_birth_date = c->birth_date;
    info.patient_sex = c->sex;
    info.study_uid = study_uid;
    info.series_uid = series_uid;
    info.sop_instance_uid = sop_uid;
    info.study_date = c->study_date;
    info.study_time = c->study_time;
    info.accession_number = c->accession_number;
    info.referring_physician = "Synthetic^Referrer";
    info.study_id = "1";
    info.study_description = "XR CHEST PA AND LATERAL";
    snprintf(desc, sizeof desc, "CHEST %s", is_lat ? "LATERAL" : "PA");
    info.series_description = desc;
    info.series_number = is_lat ? 2 : 1;
    info.instance_number = 1;
    info.view_position = is_lat ? "LL" : (c->params.view == RD_SAMPLE_VIEW_AP ? "AP" : "PA");
    info.patient_orientation = is_lat ? "P\\F" : "L\\F";
    info.image_comments = "Synthetic image made by radraft samples; not a patient.";
    info.bits_stored = 12;
    info.monochrome1 = c->monochrome1;
    info.pixel_spacing = rd_sample_pixel_spacing(opts->rows);
    info.window_center = 2048.0;
    info.window_width = 4096.0;
    st = rd_dicom_write_xray(path, img, &info, err);
    rd_image_free(img);
    return st;
}

/* ---- public: an image from a PNG ----------------------------------------------------- */

void rd_sample_png_default(rd_sample_png *s)
{
    memset(s, 0, sizeof *s);
    s->study_date = "20240101";
    s->study_time = "120000";
    s->view = RD_SAMPLE_VIEW_PA;
    s->sop_class = RD_DICOM_XRAY_DX;
    s->syntax = RD_DICOM_SYNTAX_EXPLICIT_LE;
}

/* 1 if `s` is exactly `n` ASCII digits. */
static int all_digits(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* 1 if `s` is printable text of 1..max bytes without the DICOM value separator. */
static int short_text(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max || !rd_utf8_valid(s, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '\\' || s[i] == 0x7f)
            return 0;
    return 1;
}

static rd_status png_check(const rd_sample_png *s, rd_error *err)
{
    if (!short_text(s->patient_id, 64))
        return rd_error_set(
            err, RD_E_INVALID,
            "from PNG: the patient ID must be 1..64 printable characters, no backslash");
    if (s->patient_name && s->patient_name[0] && !short_text(s->patient_name, 64))
        return rd_error_set(err, RD_E_INVALID,
                            "from PNG: the patient name is over 64 characters "
                            "or holds a control character or backslash");
    if (s->accession_number && s->accession_number[0] && !short_text(s->accession_number, 16))
        return rd_error_set(err, RD_E_INVALID,
                            "from PNG: the accession number must be at most 16 characters");
    if (!all_digits(s->study_date, 8) || !all_digits(s->study_time, 6) ||
        (s->birth_date && s->birth_date[0] && !all_digits(s->birth_date, 8)))
        return rd_error_set(err, RD_E_INVALID,
                            "from PNG: dates must be YYYYMMDD and the study time HHMMSS");
    if (s->sex && s->sex[0] && strcmp(s->sex, "M") != 0 && strcmp(s->sex, "F") != 0 &&
        strcmp(s->sex, "O") != 0)
        return rd_error_set(err, RD_E_INVALID, "from PNG: sex must be M, F or O");
    if (s->view != RD_SAMPLE_VIEW_PA && s->view != RD_SAMPLE_VIEW_AP)
        return rd_error_set(err, RD_E_INVALID, "from PNG: the view must be PA or AP");
    if ((int)s->syntax < 0 || (int)s->syntax >= (int)RD_DICOM_SYNTAX_COUNT)
        return rd_error_set(err, RD_E_INVALID, "from PNG: bad transfer syntax %d", (int)s->syntax);
    if (!(s->pixel_spacing >= 0.0 && s->pixel_spacing < 100.0))
        return rd_error_set(err, RD_E_INVALID, "from PNG: pixel spacing %g mm outside [0, 100)",
                            s->pixel_spacing);
    if (s->image_comments && strlen(s->image_comments) > 10240)
        return rd_error_set(err, RD_E_INVALID, "from PNG: image comments over 10240 characters");
    return RD_OK;
}

rd_status rd_samples_write_png(const char *png_path, const rd_sample_png *s, const char *path,
                               rd_error *err)
{
    rd_png_info pi;
    rd_dicom_xray_info info;
    rd_image *img = NULL;
    unsigned char *bytes = NULL;
    char pixels_hash[RD_SHA256_HEX_SIZE], key[512], study_uid[RD_UID_SIZE], series_uid[RD_UID_SIZE],
        sop_uid[RD_UID_SIZE], desc[64], study_desc[64];
    const char *view;
    double maxval;
    size_t n;
    rd_status st;

    if (!png_path || !s || !path)
        return rd_error_set(err, RD_E_INVALID, "from PNG: NULL argument");
    st = png_check(s, err);
    if (st != RD_OK)
        return st;
    /* The header first, so that nothing is decoded from a file that will be refused. */
    st = rd_png_read_info(png_path, &pi, err);
    if (st != RD_OK)
        return st;
    if (pi.color_type != 0 /* PNG_COLOR_TYPE_GRAY */ || (pi.bit_depth != 8 && pi.bit_depth != 16))
        return rd_error_set(err, RD_E_UNSUPPORTED,
                            "%s: not an 8- or 16-bit grayscale PNG without alpha (bit depth %d, "
                            "colour type %d)",
                            png_path, pi.bit_depth, pi.color_type);
    if (pi.width < 1 || pi.height < 1 || pi.width > RD_SAMPLE_MAX_ROWS ||
        pi.height > RD_SAMPLE_MAX_ROWS)
        return rd_error_set(err, RD_E_TOO_LARGE, "%s: %dx%d pixels, at most %d on a side", png_path,
                            pi.width, pi.height, RD_SAMPLE_MAX_ROWS);
    st = rd_png_read(png_path, &img, &pi, err);
    if (st != RD_OK)
        return st;

    /* The samples as stored (one or two bytes each, little endian) name the pixels in the
     * UIDs: the PNG's own bytes would change with its compression, the pixels do not. */
    n = (size_t)img->width * (size_t)img->height;
    maxval = pi.bit_depth == 16 ? 65535.0 : 255.0;
    bytes = malloc(n * 2);
    if (!bytes) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", png_path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)lround((double)img->data[i] * maxval);
        bytes[2 * i] = (unsigned char)(v & 0xff);
        bytes[2 * i + 1] = (unsigned char)(v >> 8);
    }
    rd_sha256_hex(bytes, n * 2, pixels_hash);

    view = s->view == RD_SAMPLE_VIEW_AP ? "AP" : "PA";
    snprintf(key, sizeof key, "radraft-samples/png/%s/%s/study", s->patient_id,
             s->accession_number ? s->accession_number : "");
    rd_samples_uid(key, study_uid);
    snprintf(key, sizeof key, "radraft-samples/png/%s/%s/series/%s/%s", s->patient_id,
             s->accession_number ? s->accession_number : "", view, pixels_hash);
    rd_samples_uid(key, series_uid);
    snprintf(key, sizeof key, "radraft-samples/png/%s/%s/instance/%s/%s", s->patient_id,
             s->accession_number ? s->accession_number : "", view, pixels_hash);
    rd_samples_uid(key, sop_uid);

    rd_dicom_xray_info_default(&info);
    info.sop_class = s->sop_class;
    info.syntax = s->syntax;
    info.patient_name = s->patient_name;
    info.patient_id = s->patient_id;
    info.patient_birth_date = s->birth_date;
    info.patient_sex = s->sex;
    info.study_uid = study_uid;
    info.series_uid = series_uid;
    info.sop_instance_uid = sop_uid;
    info.study_date = s->study_date;
    info.study_time = s->study_time;
    info.accession_number = s->accession_number;
    info.referring_physician = "Demo^Referrer";
    info.study_id = "1";
    snprintf(study_desc, sizeof study_desc, "XR CHEST %s", view);
    info.study_description = study_desc;
    snprintf(desc, sizeof desc, "CHEST %s", view);
    info.series_description = desc;
    info.series_number = 1;
    info.instance_number = 1;
    info.view_position = view;
    info.patient_orientation = "L\\F"; /* frontal, PA or AP: displayed as if facing the reader */
    info.image_comments =
        s->image_comments && s->image_comments[0]
            ? s->image_comments
            : "Converted from a PNG by radraft samples; the patient data are made up.";
    info.derivation_description = "Converted from a PNG image by radraft samples --from-png";
    info.bits_stored = pi.bit_depth;
    info.monochrome1 = 0;
    info.pixel_spacing = s->pixel_spacing > 0.0 ? s->pixel_spacing : FOV_MM / (double)img->height;
    info.window_center = 0.5 * (maxval + 1.0);
    info.window_width = maxval + 1.0;
    st = rd_dicom_write_xray(path, img, &info, err);
out:
    free(bytes);
    rd_image_free(img);
    return st;
}
